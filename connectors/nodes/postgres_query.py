"""PostgreSQL query: one statement against a database named by a ``postgres``
credential. Values come only through named parameters (``%(name)s``), bound
by the driver, never pasted into the SQL; the transaction is read-only unless
the node says ``write: true``; rows are capped and returned as JSON."""

import base64
import datetime as dt
import decimal
import json
import re
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import Field, field_validator

from connectors import base
from connectors.credentials.store import credential_for
from connectors.outbound import allowed_hosts, netguard

PARAMETER = re.compile(r"%\((\w+)\)s")
POSITIONAL = re.compile(r"%[sbt]")


class PostgresQueryConfig(base.StrictConfig):
    credential: str  # a postgres credential's name
    sql: str
    params: dict[str, Any] = Field(default_factory=dict)
    write: bool = False
    # Declares that the statement deduplicates on %(idempotency_key)s (say an
    # INSERT ... ON CONFLICT DO NOTHING keyed by it): a re-run repeats nothing.
    idempotent: bool = False
    max_rows: int = Field(default=100, ge=1, le=10_000)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("sql")
    @classmethod
    def _parameters_only(cls, sql: str) -> str:
        # Expressions in the SQL would be rendered into its text: an injection.
        # Values from expressions belong in params, which are bound.
        if "{{" in sql or "{%" in sql:
            raise ValueError(
                "the SQL cannot hold expressions; name a parameter, e.g. %(email)s, "
                "and give its value in params"
            )
        if POSITIONAL.search(sql.replace("%%", "")):
            raise ValueError("use named parameters, e.g. %(email)s; write a literal % as %%")
        if not sql.strip():
            raise ValueError("the SQL is empty")
        return sql


def _jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)  # exact; a float would round money
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def _error(exc: psycopg.Error, *, stage: str) -> base.ConnectorError:
    """``stage``: "connect" or "execute", where nothing is written (the
    statement runs in a transaction that any failure rolls back), or
    "commit", which the server may have applied although its answer was
    lost: only then may a write have happened."""
    if stage == "execute" and exc.sqlstate is None:
        # No server error: the connection broke while the statement ran.
        return base.not_sent(f"connection lost: {str(exc).strip()}", retryable=True)
    sent = stage == "commit"
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return base.ConnectorError(
            "the statement timed out", retryable=True, may_have_been_sent=sent
        )
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return base.not_sent("the statement writes, and this step is read-only (set write: true)")
    if isinstance(exc, psycopg.OperationalError):
        text = str(exc)
        permanent = "authentication failed" in text or "does not exist" in text
        return base.ConnectorError(f"connection failed: {text.strip()}", retryable=not permanent,
                              may_have_been_sent=sent)  # fmt: skip
    return base.ConnectorError(f"query failed: {str(exc).strip()}", retryable=False,
                          may_have_been_sent=sent)  # fmt: skip


@base.register
class PostgresQuery(base.Connector):
    key = "postgres.query"
    label = "PostgreSQL query"
    category = "Data"
    icon = "database"
    description = (
        "Runs one parameterised SQL statement against a PostgreSQL credential's database: "
        "read-only unless the node says write, with a row limit and a statement timeout."
    )
    example_config = {
        "credential": "warehouse",
        "sql": "SELECT id, status FROM orders WHERE id = %(order_id)s",
        "params": {"order_id": "{{ trigger.order_id }}"},
        "max_rows": 10,
    }
    Config = PostgresQueryConfig
    timeout_seconds = 300.0
    credential_fields = ("credential",)

    def side_effect(self, config: PostgresQueryConfig) -> base.SideEffect:
        if not config.write:
            return base.SideEffect.NONE
        return base.SideEffect.IDEMPOTENT if config.idempotent else base.SideEffect.UNSAFE

    def breaker_target(self, config: PostgresQueryConfig) -> str | None:
        # The database is the credential's: one credential, one server.
        return base.target_of("", config.credential)

    def execute(self, ctx: base.Context) -> base.Result:
        config: PostgresQueryConfig = ctx.config
        params = {**config.params, "idempotency_key": ctx.idempotency_key}
        missing = sorted(set(PARAMETER.findall(config.sql)) - set(params))
        if missing:
            raise base.not_sent(f"params has no value for: {', '.join(missing)}")
        try:
            conn = self._connect(ctx, config)
        except psycopg.Error as exc:
            raise _error(exc, stage="connect") from None
        with conn:
            stage = "execute"
            try:
                with conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(config.sql, params)
                    output = self._output(cur, config)
                stage = "commit"
                conn.commit()
            except psycopg.Error as exc:
                raise _error(exc, stage=stage) from None
        return base.Result(output=json.loads(json.dumps(output, default=_jsonable)))

    @staticmethod
    def _output(cur: psycopg.Cursor, config: PostgresQueryConfig) -> dict:
        if cur.description is None:  # a statement with no result set
            return {"rows": [], "row_count": max(cur.rowcount, 0), "truncated": False}
        rows = cur.fetchmany(config.max_rows + 1)
        return {
            "columns": [column.name for column in cur.description],
            "rows": rows[: config.max_rows],
            "row_count": min(len(rows), config.max_rows),
            "truncated": len(rows) > config.max_rows,
        }

    @staticmethod
    def _connect(ctx: base.Context, config: PostgresQueryConfig) -> psycopg.Connection:
        database = credential_for(config.credential, types={"postgres"})
        fields = database.fields
        port = int(fields["port"])
        # The password goes only where the credential allows.
        allowed_hosts.check(database, fields["host"], port)
        address = netguard.resolve_checked(fields["host"], port)
        timeout_ms = int(config.timeout_seconds * 1000)
        options = f"-c statement_timeout={timeout_ms}"
        if not config.write:
            # The server refuses any write in this session's transactions.
            options += " -c default_transaction_read_only=on"
        conn = psycopg.connect(
            host=fields["host"],
            hostaddr=address,  # connect to the checked address, verify TLS by name
            port=port,
            dbname=fields["dbname"],
            user=fields["user"],
            password=database.secrets.get("password", ""),
            connect_timeout=max(1, int(config.timeout_seconds)),
            application_name=f"ledgerflow run {ctx.run_id} {ctx.node_id}"[:63],
            options=options,
        )
        conn.read_only = not config.write  # BEGIN READ ONLY as well
        return conn
