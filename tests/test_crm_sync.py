"""The demo's "Nightly CRM sync" against the fake CRM (fakeapi/crm.py), a
real server on 127.0.0.1: a query of the customers changed since the last
successful run's watermark (``last_success``), a loop that upserts each.
A worker that dies mid-loop repeats nothing that finished: the fake counts
every write per external id, and keeps what each one carried."""

import datetime as dt
import io

import pytest
from django.core.management import call_command

from flows.management.commands.seed_demo import EPOCH, seed_crm_sync
from runs import driver, execute, perform
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run, Step
from tests.crm_helpers import control, report
from tests.engine_helpers import chain, publish, transform

START = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)
CUSTOMERS = [
    {"Id": f"cus_{n}", "Email": f"c{n}@example.com", "Name": f"Customer {n}",
     "LastModifiedDate": f"2026-11-{10 + n:02d}T08:00:00Z"}
    for n in range(7)
]  # fmt: skip


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing after it runs, nothing catches it."""


@pytest.fixture
def sync_flow(olga, crm):
    control(crm, seed={"Customer": CUSTOMERS}, page_size=3)  # three pages of changes
    return seed_crm_sync(actor=olga, owner=olga, crm_url=crm.url)


def contact(n: int) -> str:
    return f"Contact/Customer_Id__c/cus_{n}"


def started(run) -> dict:
    return Event.objects.get(stream=f"run:{run.pk}", type="run.started").payload


def test_a_run_syncs_what_changed_since_the_last_successful_run(sync_flow, crm, eager_celery):
    with clock.frozen_at(START), eager_celery():
        first = driver.start_run(flow=sync_flow, input={"fire": "1"}, actor="schedule")
    first.refresh_from_db()
    assert first.status == "succeeded", list(Step.objects.values_list("node_id", "error"))
    assert "last_success" not in started(first)  # no run had succeeded yet
    assert Step.objects.get(run=first, node_id="since").output == {"since": EPOCH}
    assert first.output["mark"] == {"since": "2026-11-16T08:00:00Z", "synced": 7}
    seen = report(crm)
    assert seen["writes"] == {contact(n): 1 for n in range(7)} and seen["query_pages"] == 3

    # One customer changes; the next night syncs it alone.
    renamed = {"Name": "Renamed", "LastModifiedDate": "2026-11-30T09:00:00Z"}
    control(crm, touch={"type": "Customer", "id": "cus_2", "fields": renamed})
    with clock.frozen_at(START + dt.timedelta(days=1)), eager_celery():
        second = driver.start_run(flow=sync_flow, input={"fire": "2"}, actor="schedule")
    second.refresh_from_db()
    assert second.status == "succeeded", second.error
    recorded = started(second)["last_success"]
    assert recorded["run_id"] == first.pk and recorded["output"] == first.output
    assert Run.objects.get(pk=second.pk).last_success == recorded
    assert second.output["mark"] == {"since": "2026-11-30T09:00:00Z", "synced": 1}
    seen = report(crm)
    assert seen["writes"][contact(2)] == 2 and seen["records"][contact(2)]["Name"] == "Renamed"
    assert sum(seen["writes"].values()) == 8

    # Nothing changed since: the third run writes nothing.
    with clock.frozen_at(START + dt.timedelta(days=2)), eager_celery():
        third = driver.start_run(flow=sync_flow, input={"fire": "3"}, actor="schedule")
    third.refresh_from_db()
    assert third.status == "succeeded" and third.output["mark"]["synced"] == 0
    assert third.output["mark"]["since"] == "2026-11-30T09:00:00Z"
    assert sum(report(crm)["writes"].values()) == 8


def test_a_crash_mid_loop_upserts_no_record_twice(sync_flow, crm, sweep_at):
    with clock.frozen_at(START):
        run = driver.start_run(flow=sync_flow, input={"fire": "1"}, actor="schedule")
        query = Step.objects.get(run=run, node_id="changed")
        claimed = execute.claim_step(run.pk, "changed", query.attempt)
        outcome = perform.perform(claimed.connector, claimed.ctx)
        execute.finish_step(run.pk, "changed", query.attempt, outcome, eager=False)

        loop = Step.objects.get(run=run, node_id="upsert_each")
        claimed = execute.claim_step(run.pk, "upsert_each", loop.attempt)
        record = claimed.ctx.record_iterations
        batches = []

        def record_then_die(outputs):
            record(outputs)  # this batch commits ...
            batches.append(sorted(outputs))
            if len(batches) == 2:
                raise WorkerKilled  # ... and the worker dies before the third

        claimed.ctx.record_iterations = record_then_die
        with pytest.raises(WorkerKilled):
            perform.perform(claimed.connector, claimed.ctx)
    assert batches == [[0, 1], [2, 3]]
    assert report(crm)["writes"] == {contact(n): 1 for n in range(4)}

    # Meanwhile a customer that was already upserted changes at the source:
    # the run goes on from what its query recorded, and tonight's upserts
    # are not repeated (the next run picks the change up by its watermark).
    control(crm, touch={"type": "Customer", "id": "cus_1", "fields": {"Name": "Changed"}})

    later = START + dt.timedelta(seconds=claimed.lease_seconds + 1)
    assert sweep_at(later)["leases"] == 1
    # What the CRM saw first: every customer written once, as queried.
    seen = report(crm)
    assert seen["duplicates"] == [] and seen["conflicts"] == []
    assert seen["writes"] == {contact(n): 1 for n in range(7)}
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert Step.objects.get(run=run, node_id="upsert_each").attempt == 2
    assert seen["records"][contact(1)]["Name"] == "Customer 1"
    assert seen["query_pages"] == 3  # the query was not run again
    assert run.output["mark"] == {"since": "2026-11-16T08:00:00Z", "synced": 7}


def test_last_success_survives_a_rebuild_and_is_not_looked_up_when_unread(
    sync_flow, olga, crm, eager_celery
):
    with eager_celery():
        first = driver.start_run(flow=sync_flow, input={}, actor="schedule")
    with eager_celery():
        second = driver.start_run(flow=sync_flow, input={}, actor="schedule")
    second.refresh_from_db()
    recorded = second.last_success
    assert recorded["run_id"] == first.pk
    Run.objects.filter(pk=second.pk).update(last_success=None)
    call_command("rebuild_projections", stdout=io.StringIO())
    assert Run.objects.get(pk=second.pk).last_success == recorded

    plain = publish(olga, chain(transform("t", x="{{ run.id }}")), slug="plain")
    runs = []
    for _ in range(2):
        with eager_celery():
            runs.append(driver.start_run(flow=plain, input={}, actor="u"))
    assert all(Run.objects.get(pk=r.pk).status == "succeeded" for r in runs)
    assert "last_success" not in started(runs[1]) and runs[1].last_success is None
