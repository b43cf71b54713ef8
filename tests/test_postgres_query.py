"""The PostgreSQL query connector against the real local server, in a
scratch database this module creates and drops.

PostgreSQL on 127.0.0.1:5432 is an internal address and is not on the
default allowlist (a flow must not reach the platform's own database); each
test that queries adds exactly 127.0.0.1:5432 for itself, via the settings
fixture.
"""

import psycopg
import pytest
from django.db import connection

from connectors.base import ConnectorError, SideEffect
from connectors.credentials import store as credentials
from connectors.nodes.postgres_query import PostgresQuery, PostgresQueryConfig
from connectors.outbound import netguard
from tests.connector_helpers import run_connector

ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def scratch_db(db):
    name = f"{connection.settings_dict['NAME']}_pgquery"[:63]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{name}", autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE customers (id int PRIMARY KEY, email text, balance numeric(10,2),"
            " joined date)"
        )
        conn.execute(
            "INSERT INTO customers SELECT n, 'c' || n || '@example.test', n * 1.5,"
            " date '2026-01-01' + n FROM generate_series(1, 30) n"
        )
    credentials.credential_create(
        actor="system:test", name="scratch", type="postgres",
        fields={"host": "127.0.0.1", "port": 5432, "dbname": name, "user": "postgres"},
        secrets={"password": "unused-under-trust-auth"}, allowed_hosts=["127.0.0.1:5432"],
    )  # fmt: skip
    yield name
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def allow_local_postgres(settings):
    # Only for these tests: the scratch database lives on the platform's own
    # PostgreSQL, which the default allowlist (rightly) refuses.
    settings.LEDGERFLOW_OUTBOUND_ALLOWLIST = ["127.0.0.1:5432"]


def query(sql: str, **config):
    return run_connector("postgres.query", {"credential": "scratch", "sql": sql, **config})


def test_named_parameters_are_bound_and_rows_come_back_as_json(scratch_db, allow_local_postgres):
    result = query(
        "SELECT id, email, balance, joined FROM customers WHERE id <= %(up_to)s ORDER BY id",
        params={"up_to": 2},
    )
    assert result.output == {
        "columns": ["id", "email", "balance", "joined"],
        "rows": [
            {"id": 1, "email": "c1@example.test", "balance": "1.50", "joined": "2026-01-02"},
            {"id": 2, "email": "c2@example.test", "balance": "3.00", "joined": "2026-01-03"},
        ],
        "row_count": 2,
        "truncated": False,
    }


def test_a_value_is_never_pasted_into_the_sql(scratch_db, allow_local_postgres):
    sneaky = "1 OR 1=1"
    result = query("SELECT id FROM customers WHERE email = %(email)s", params={"email": sneaky})
    assert result.output["rows"] == []


def test_rows_are_capped(scratch_db, allow_local_postgres):
    result = query("SELECT id FROM customers ORDER BY id", max_rows=5)
    assert [row["id"] for row in result.output["rows"]] == [1, 2, 3, 4, 5]
    assert result.output["truncated"] is True


def test_a_read_only_step_cannot_write(scratch_db, allow_local_postgres):
    with pytest.raises(ConnectorError, match="read-only") as failed:
        query("DELETE FROM customers WHERE id = %(id)s", params={"id": 1})
    assert failed.value.retryable is False


def test_a_write_step_writes_and_can_key_on_the_idempotency_key(scratch_db, allow_local_postgres):
    sql = (
        "INSERT INTO customers (id, email) VALUES (%(id)s, %(idempotency_key)s)"
        " ON CONFLICT DO NOTHING"
    )
    first = query(sql, params={"id": 100}, write=True, idempotent=True)
    again = query(sql, params={"id": 100}, write=True, idempotent=True)
    assert (first.output["row_count"], again.output["row_count"]) == (1, 0)
    rows = query("SELECT email FROM customers WHERE id = 100").output["rows"]
    assert rows == [{"email": "idem-key-1"}]


def test_the_statement_timeout_applies(scratch_db, allow_local_postgres):
    with pytest.raises(ConnectorError, match="timed out") as failed:
        query("SELECT pg_sleep(5)", timeout_seconds=0.5)
    assert failed.value.retryable is True


def test_the_local_database_is_refused_without_the_allowlist(scratch_db, settings):
    settings.LEDGERFLOW_OUTBOUND_ALLOWLIST = []
    with pytest.raises(netguard.OutboundRefused, match="127.0.0.1 port 5432"):
        query("SELECT 1")


@pytest.mark.parametrize(
    ("sql", "problem"),
    [("SELECT * FROM t WHERE id = {{ trigger.id }}", "cannot hold expressions"),
     ("SELECT * FROM t WHERE id = %s", "named parameters"),
     ("   ", "empty")],
)  # fmt: skip
def test_sql_with_expressions_or_positional_parameters_is_refused(sql, problem):
    with pytest.raises(ValueError, match=problem):
        PostgresQueryConfig.model_validate({"credential": "x", "sql": sql})


def test_side_effects_follow_the_declaration():
    connector = PostgresQuery()
    read = PostgresQueryConfig.model_validate({"credential": "x", "sql": "SELECT 1"})
    write = read.model_copy(update={"write": True})
    keyed = read.model_copy(update={"write": True, "idempotent": True})
    assert [connector.side_effect(c) for c in (read, write, keyed)] == [
        SideEffect.NONE, SideEffect.UNSAFE, SideEffect.IDEMPOTENT,
    ]  # fmt: skip


def test_a_write_that_fails_before_its_commit_is_known_not_to_have_happened(
    scratch_db, allow_local_postgres
):
    """Any failure before COMMIT rolls the transaction back: nothing was
    written, so even an unsafe write may be retried."""
    with pytest.raises(ConnectorError) as refused:
        query("INSERT INTO customers (id) VALUES (1)", write=True)  # the key exists
    assert not refused.value.retryable and not refused.value.may_have_been_sent
    with pytest.raises(ConnectorError) as timed_out:
        query("INSERT INTO customers (id) SELECT 99 FROM pg_sleep(3)", write=True,
              timeout_seconds=0.5)  # fmt: skip
    assert timed_out.value.retryable and not timed_out.value.may_have_been_sent
    left = query("SELECT count(*) AS n FROM customers WHERE id = 99").output["rows"]
    assert left == [{"n": 0}]
