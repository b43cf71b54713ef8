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
    ORDERS_RUNS,
    ROOT,
    embedded_orders,
    manage,
    order_file,
    sqlite_rows,
    start_order,
    terminate_group,
    wait_until,
    worker_command,
)

pytestmark = pytest.mark.slow


def start_processes(env: dict, log_path) -> subprocess.Popen:
    """Two worker processes and beat, in one process group."""
    log = open(log_path, "w")
    command = (
        f"{' '.join(worker_command(2))} & "
        f"{sys.executable} -m celery -A config beat --loglevel INFO "
        f"--schedule {log_path.parent / 'beat-schedule'} & wait"
    )
    return subprocess.Popen(
        ["bash", "-c", command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop_processes(proc: subprocess.Popen) -> None:
    terminate_group(proc)


def test_a_run_completes_on_the_embedded_default(tmp_path):
    with embedded_orders(tmp_path, LEDGERFLOW_SWEEP_SECONDS="1") as (env, payments):
        workers = start_processes(env, tmp_path / "workers.log")
        try:
            for n in range(3):
                start_order(env, tmp_path, {"order_id": f"e-{n}", "amount": 2})
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
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the test process's, not theirs
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
