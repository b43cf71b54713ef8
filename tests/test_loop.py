"""Loop over items: each item is a durable iteration with its own key,
recorded batch by batch, so a crash mid-loop does not repeat finished items."""

import datetime as dt
import io

import httpx
import pytest
from django.core.management import call_command

from runs import decider, driver, execute, perform
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Step
from tests.engine_helpers import chain, publish
from tests.payments_helpers import report

START = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
ORDERS = [{"id": f"L-{n}", "amount": 10 + n} for n in range(7)]


def loop_flow(olga, payments, batch_size=3):
    charge_each = {
        "id": "charge_each",
        "type": "loop",
        "config": {
            "items": "{{ trigger.orders }}",
            "batch_size": batch_size,
            "body": {
                "type": "http.request",
                "config": {
                    "method": "POST",
                    "url": f"{payments.url}/charges",
                    "json_body": {"order_id": "{{ item.id }}", "amount": "{{ item.amount }}",
                                  "line": "{{ index }}"},
                    "honours_idempotency_key": True,
                    "timeout_seconds": 5,
                },
            },
        },
        "retry": {"max_attempts": 3, "initial_seconds": 10, "jitter": 0},
    }  # fmt: skip
    return publish(olga, chain(charge_each), slug="loop")


def expected_keys(run_id: int) -> set[str]:
    return {
        decider.idempotency_key(root_run_id=run_id, node="charge_each", iteration=i)
        for i in range(len(ORDERS))
    }


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing after it runs, nothing catches it."""


def test_a_loop_charges_each_item_once_under_its_own_key(olga, payments, eager_celery):
    flow = loop_flow(olga, payments)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"orders": ORDERS}, actor="u")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    seen = report(payments)
    assert seen["charges"] == 7 and seen["requests"] == 7 and seen["duplicates"] == []
    keys = {key for order in seen["orders"].values() for key in order["keys"]}
    assert keys == expected_keys(run.pk) and len(keys) == 7
    step = Step.objects.get(run=run, node_id="charge_each")
    assert [out["body"]["order_id"] for out in step.output["outputs"]] == [o["id"] for o in ORDERS]
    # Recorded batch by batch: 3 + 3 + 1 iterations in three commits.
    recorded = Event.objects.filter(stream=run.stream, type="step.iteration_succeeded")
    assert sorted(e.payload["index"] for e in recorded) == list(range(7))
    assert recorded.values("occurred_at").distinct().count() == 3
    assert len(step.iterations) == 7


def test_a_worker_killed_mid_loop_resumes_without_repeating_finished_items(
    olga, payments, sweep_at
):
    flow = loop_flow(olga, payments)
    with clock.frozen_at(START):
        run = driver.start_run(flow=flow, input={"orders": ORDERS}, actor="u")
        step = Step.objects.get(run=run, node_id="charge_each")
        claimed = execute.claim_step(run.pk, "charge_each", step.attempt)
        record = claimed.ctx.record_iterations

        def record_then_die(outputs):
            record(outputs)  # the first batch commits ...
            raise WorkerKilled  # ... and the worker dies before the second

        claimed.ctx.record_iterations = record_then_die
        with pytest.raises(WorkerKilled):
            perform.perform(claimed.connector, claimed.ctx)
    assert report(payments)["requests"] == 3
    assert sorted(Step.objects.get(run=run, node_id="charge_each").iterations) == ["0", "1", "2"]

    # The sweep finds the expired lease and runs the loop again (attempt 2).
    later = START + dt.timedelta(seconds=claimed.lease_seconds + 1)
    assert sweep_at(later)["leases"] == 1
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    seen = report(payments)
    assert seen["requests"] == 7  # items 0-2 were not sent again, not even deduplicated
    assert seen["charges"] == 7 and seen["duplicates"] == []
    step = Step.objects.get(run=run, node_id="charge_each")
    assert step.attempt == 2 and len(step.output["outputs"]) == 7


def test_a_failing_item_retries_the_loop_from_where_it_stopped(
    olga, payments, eager_celery, sweep_at
):
    flow = loop_flow(olga, payments)
    with clock.frozen_at(START):
        run = driver.start_run(flow=flow, input={"orders": ORDERS}, actor="u")
        step = Step.objects.get(run=run, node_id="charge_each")
        claimed = execute.claim_step(run.pk, "charge_each", step.attempt)
        record = claimed.ctx.record_iterations

        def record_then_break_the_api(outputs):
            record(outputs)
            if outputs.keys() == {0, 1, 2}:  # after the first batch only
                httpx.post(f"{payments.url}/control", json={"fail_next": 1, "fail_status": 503})

        claimed.ctx.record_iterations = record_then_break_the_api
        outcome = perform.perform(claimed.connector, claimed.ctx)
        # One item of the second batch (run concurrently) met the 503.
        assert outcome.retryable and "answered 503" in outcome.error
        with eager_celery():
            execute.finish_step(run.pk, "charge_each", 1, outcome, eager=False)
    step = Step.objects.get(run=run, node_id="charge_each")
    assert step.status == "retrying"
    # The first batch and the two items of the second that succeeded stay done.
    assert {"0", "1", "2"} <= set(step.iterations) and len(step.iterations) == 5
    later = START + dt.timedelta(seconds=11)
    sweep_at(later)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    seen = report(payments)
    assert seen["requests"] == 3 + 3 + 2  # then only the failed item and item 6
    assert seen["charges"] == 7 and seen["duplicates"] == []


def test_loop_iterations_survive_a_projection_rebuild(olga, payments, eager_celery):
    flow = loop_flow(olga, payments)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"orders": ORDERS}, actor="u")
    before = Step.objects.get(run=run, node_id="charge_each").iterations
    Step.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert Step.objects.get(run=run, node_id="charge_each").iterations == before


def test_a_loop_body_of_an_unknown_type_is_refused_at_publish(olga):
    from flows.graph import InvalidGraph, validate

    graph = chain({"id": "each", "type": "loop", "config": {
        "items": [1, 2], "body": {"type": "nope", "config": {}}}})  # fmt: skip
    with pytest.raises(InvalidGraph, match="unknown connector type 'nope'"):
        validate(graph)


def test_items_that_are_not_a_list_dead_letter_with_a_clear_message(olga, payments, eager_celery):
    flow = loop_flow(olga, payments)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"orders": "L-1"}, actor="u")
    step = Step.objects.get(run=run, node_id="charge_each")
    assert step.status == "dead_lettered" and "not a list" in step.error
