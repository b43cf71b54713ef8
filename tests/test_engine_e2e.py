"""Runs end to end with real Celery worker processes: on the embedded default
(SQLite and the filesystem broker) and on PostgreSQL and Redis."""

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from fakeapi.payments import PaymentsServer
from tests.processes import (
    ROOT,
    embedded_env,
    manage,
    sqlite_rows,
    terminate_group,
    wait_until,
)  # fmt: skip

pytestmark = pytest.mark.slow


def order_file(payments_url: str, owner: str) -> dict:
    return {
        "format": "ledgerflow/flow@1",
        "flow": {"slug": "orders", "name": "Orders", "owner": owner,
                 "runbook": "Replay the dead letter.", "failure_mode": "Orders ship unpaid."},
        "graph": {
            "nodes": [
                {"id": "start", "type": "trigger.manual"},
                {"id": "prepare", "type": "transform",
                 "config": {"fields": {"amount": "{{ trigger.amount * 100 }}"}}},
                {"id": "charge", "type": "http.request", "config": {
                    "method": "POST", "url": f"{payments_url}/charges",
                    "json_body": {"order_id": "{{ trigger.order_id }}",
                                  "amount": "{{ steps.prepare.output.amount }}"},
                    "honours_idempotency_key": True}},
                {"id": "settle", "type": "delay", "config": {"seconds": 1}},
                {"id": "confirm", "type": "transform",
                 "config": {"fields": {"charge": "{{ steps.charge.output.body.id }}"}}},
            ],
            "edges": [
                {"from": "start", "to": "prepare"}, {"from": "prepare", "to": "charge"},
                {"from": "charge", "to": "settle"}, {"from": "settle", "to": "confirm"},
            ],
        },
    }  # fmt: skip


def start_processes(env: dict, log_path) -> subprocess.Popen:
    """Two worker processes and beat, in one process group."""
    log = open(log_path, "w")
    command = (
        f"{sys.executable} -m celery -A config worker --concurrency 2 --loglevel INFO "
        f"--without-mingle --without-gossip & "
        f"{sys.executable} -m celery -A config beat --loglevel INFO "
        f"--schedule {log_path.parent / 'beat-schedule'} & wait"
    )
    return subprocess.Popen(
        ["bash", "-c", command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop_processes(proc: subprocess.Popen) -> None:
    terminate_group(proc)


# The demo seeds runs of its own: count only the imported flow's.
ORDERS_RUNS = (
    "SELECT COUNT(*) FROM runs_run r JOIN flows_flow f ON f.id = r.flow_id WHERE f.slug = 'orders'"
)


def test_a_run_completes_on_the_embedded_default(tmp_path):
    env = embedded_env(tmp_path, LEDGERFLOW_SWEEP_SECONDS="1")
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo")
    with PaymentsServer() as payments:
        flow_path = tmp_path / "orders.json"
        flow_path.write_text(json.dumps(order_file(payments.url, "operator")))
        manage(env, "import_flow", str(flow_path), "--activate")
        # The workers may reach the fake API and nothing else local.
        env["LEDGERFLOW_OUTBOUND_ALLOWLIST"] = payments.url.removeprefix("http://")
        workers = start_processes(env, tmp_path / "workers.log")
        try:
            for n in range(3):
                (tmp_path / "in.json").write_text(json.dumps({"order_id": f"e-{n}", "amount": 2}))
                manage(env, "start_run", "orders", "--input", str(tmp_path / "in.json"))
            wait_until(
                lambda: (
                    sqlite_rows(tmp_path, f"{ORDERS_RUNS} AND r.status = 'succeeded'") == [(3,)]
                ),
                timeout=60,
                what="3 runs to succeed",
            )
        finally:
            stop_processes(workers)
        report = payments.state.report()
    assert report["charges"] == 3 and report["duplicates"] == []
    outputs = sqlite_rows(tmp_path, ORDERS_RUNS.replace("COUNT(*)", "r.output") + " ORDER BY r.id")
    assert all(json.loads(row[0])["confirm"]["charge"].startswith("ch_") for row in outputs)
    manage(env, "verify_audit_chain")


@pytest.mark.django_db(transaction=True)
def test_a_run_completes_on_postgresql_and_redis(tmp_path, olga):
    from flows import services, transfer
    from runs import driver
    from runs.models import Run

    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        DJANGO_SETTINGS_MODULE="config.settings",
        LEDGERFLOW_DATA_DIR=str(tmp_path),
        LEDGERFLOW_SWEEP_SECONDS="1",
    )
    from django.conf import settings

    env["REDIS_URL"] = settings.REDIS_URL
    env.pop("CELERY_BROKER_URL", None)
    with PaymentsServer() as payments:
        flow = transfer.import_flow(order_file(payments.url, "olga"), actor=olga)
        flow = services.flow_transition(flow=flow, actor=olga, action="activate")
        env["LEDGERFLOW_OUTBOUND_ALLOWLIST"] = payments.url.removeprefix("http://")
        workers = start_processes(env, tmp_path / "workers.log")
        try:
            runs = [
                driver.start_run(flow=flow, input={"order_id": f"p-{n}", "amount": 1}, actor="u")
                for n in range(3)
            ]
            wait_until(
                lambda: (
                    Run.objects.filter(pk__in=[r.pk for r in runs], status="succeeded").count() == 3
                ),
                timeout=60,
                what="3 runs to succeed",
            )
        finally:
            stop_processes(workers)
        report = payments.state.report()
    assert report["charges"] == 3 and report["duplicates"] == []
