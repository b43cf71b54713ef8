"""The CRM sync with real Celery worker processes on PostgreSQL and Redis:
a worker SIGKILLed in the middle of the loop, a new worker, the recovery
sweep. Nothing that finished is upserted again, and nothing is rewritten
with different content; the fake CRM counts every write."""

import datetime as dt
import os
import signal
import subprocess
import sys

import pytest
from django.db import connection

from fakeapi.crm import CrmServer
from runs.ground import clock
from tests.processes import ROOT, terminate_group, wait_until

pytestmark = pytest.mark.slow

CUSTOMERS = [
    {"Id": f"cus_{n:02d}", "Email": f"c{n}@example.com", "Name": f"Customer {n}",
     "LastModifiedDate": f"2026-11-{n + 1:02d}T08:00:00Z"}
    for n in range(20)
]  # fmt: skip


def start_worker(env: dict, log_path) -> subprocess.Popen:
    log = open(log_path, "a")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency", "1",
         "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def writes(crm) -> dict[str, int]:
    with crm.state.lock:
        return dict(crm.state.report()["writes"])


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_sync_repeats_nothing_that_finished(tmp_path, olga):
    from django.conf import settings

    from connectors.nodes.crm import forget_tokens
    from flows.management.commands.seed_demo import seed_crm_sync
    from runs import driver, sweeper
    from runs.models import Run, Step

    forget_tokens()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        DJANGO_SETTINGS_MODULE="config.settings", LEDGERFLOW_DATA_DIR=str(tmp_path),
        REDIS_URL=settings.REDIS_URL,
        # The workers decrypt the credential this process stored.
        LEDGERFLOW_SECRET_KEYS=",".join(settings.LEDGERFLOW_SECRET_KEYS),
    )  # fmt: skip
    env.pop("CELERY_BROKER_URL", None)
    with CrmServer() as crm:
        crm.state.source["Customer"] = [dict(c) for c in CUSTOMERS]
        crm.state.latency = 0.15  # each upsert takes a while: the loop is killable mid-way
        env["LEDGERFLOW_OUTBOUND_ALLOWLIST"] = crm.url.removeprefix("http://")
        flow = seed_crm_sync(actor=olga, owner=olga, crm_url=crm.url)
        worker = start_worker(env, tmp_path / "worker.log")
        try:
            run = driver.start_run(flow=flow, input={}, actor="schedule")
            wait_until(lambda: sum(writes(crm).values()) >= 7, timeout=60,
                       what="the loop to be half-way")  # fmt: skip
            os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool, at once
            worker.wait(timeout=10)
            step = Step.objects.get(run=run, node_id="upsert_each")
            assert step.status == "running" and step.lease_until is not None
            finished = {CUSTOMERS[int(i)]["Id"] for i in step.iterations}
            assert finished and len(finished) < len(CUSTOMERS)
            # The batch the worker was in (the loop's batches are 2 items,
            # sent in order: its body names a credential).
            unfinished = [c["Id"] for c in CUSTOMERS if c["Id"] not in finished]
            in_flight = set(unfinished[:2])

            worker = start_worker(env, tmp_path / "worker.log")
            later = step.lease_until + dt.timedelta(seconds=1)
            with clock.frozen_at(later):
                assert sweeper.sweep(later)["leases"] == 1  # the dead worker's step
            wait_until(
                lambda: Run.objects.get(pk=run.pk).status in ("succeeded", "failed", "waiting"),
                timeout=90, what="the run to finish",
            )  # fmt: skip
        finally:
            terminate_group(worker)
            forget_tokens()
        seen = crm.state.report()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    key = "Contact/Customer_Id__c/{}".format
    # Every customer reached the CRM, and none with two different contents.
    assert set(seen["writes"]) == {key(c["Id"]) for c in CUSTOMERS}
    assert seen["conflicts"] == []
    # What had finished before the kill was not sent again; only an upsert
    # in flight when the worker died may have gone twice (same key, same
    # content: idempotent at the CRM).
    assert all(seen["writes"][key(c)] == 1 for c in finished)
    assert set(seen["duplicates"]) <= {key(c) for c in in_flight}
    assert Step.objects.get(run=run, node_id="upsert_each").attempt == 2
