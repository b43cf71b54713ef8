"""The run engine, driven in-process against real PostgreSQL and a real
local payments API. Time is moved with the one clock."""

import datetime as dt
import io

import pytest
from django.core.management import call_command

from connectors import base as connectors
from runs import decider, driver, execute, perform
from runs.ground import clock
from runs.ground.eventstore import verify_stream
from runs.ground.models import Event
from runs.models import Run, Step, Timer
from tests.engine_helpers import chain, publish, transform
from tests.payments_helpers import charge_node, control, report


def order_flow(olga, payments, **charge_overrides):
    graph = chain(
        {"id": "prepare", "type": "transform", "config": {"fields": {"ok": True}}},
        charge_node(payments, **charge_overrides),
        {
            "id": "confirm",
            "type": "transform",
            "config": {"fields": {"charge_id": "{{ steps.charge.output.body.id }}"}},
        },
    )
    return publish(olga, graph, slug="orders")


def steps(run) -> dict[str, Step]:
    return {s.node_id: s for s in Step.objects.filter(run=run)}


def event_types(run) -> list[str]:
    return list(
        Event.objects.filter(stream=f"run:{run.pk}").order_by("seq").values_list("type", flat=True)
    )


def test_branches_run_inline_and_the_path_not_taken_is_skipped(olga, eager_celery):
    condition = "{{ steps.calc.output.double > 5 }}"
    graph = chain(
        transform("calc", double="{{ trigger.n * 2 }}"),
        {"id": "check", "type": "branch", "config": {"condition": condition}},
    )
    either = "{{ steps.big.output.size | default(steps.small.output.size | default('')) }}"
    graph["nodes"] += [
        transform("big", size="big"),
        transform("small", size="small"),
        transform("join", size=either),
    ]
    graph["edges"] += [
        {"from": "check", "from_port": "true", "to": "big"},
        {"from": "check", "from_port": "false", "to": "small"},
        {"from": "big", "to": "join"},
        {"from": "small", "to": "join"},
    ]
    flow = publish(olga, graph)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"n": 1}, actor="user:olga")
    run.refresh_from_db()
    by_node = steps(run)
    assert run.status == "succeeded"
    assert by_node["big"].status == "skipped" and by_node["small"].status == "succeeded"
    assert by_node["join"].output == {"size": "small"}
    assert run.output == {"join": {"size": "small"}}
    assert verify_stream(run.stream) is None


def test_a_charge_commits_started_before_the_effect_and_sends_its_key(olga, payments, eager_celery):
    flow = order_flow(olga, payments)
    with eager_celery():
        run = driver.start_run(
            flow=flow, input={"order_id": "o-1", "amount": 25}, actor="user:olga"
        )
    run.refresh_from_db()
    charge = steps(run)["charge"]
    assert run.status == "succeeded", run.error
    assert steps(run)["confirm"].output == {"charge_id": charge.output["body"]["id"]}
    assert report(payments)["orders"]["o-1"]["keys"] == [charge.idempotency_key]
    types = event_types(run)
    assert types.index("step.started") < types.index("step.succeeded")
    assert charge.idempotency_key == decider.idempotency_key(root_run_id=run.pk, node="charge")


def test_retryable_failures_retry_on_durable_timers_with_one_key(
    olga, payments, eager_celery, sweep_at
):
    flow = order_flow(olga, payments)
    control(payments, fail_next=2, fail_status=503)
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(start), eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "o-2", "amount": 10}, actor="u")
    charge = steps(run)["charge"]
    assert charge.status == "retrying" and charge.attempt == 2
    assert charge.due_at == start + dt.timedelta(seconds=10)  # initial backoff, no jitter
    assert Timer.objects.filter(run=run, kind="retry").count() == 1
    assert sweep_at(start + dt.timedelta(seconds=5))["timers"] == 0  # not due yet
    sweep_at(start + dt.timedelta(seconds=11))
    assert steps(run)["charge"].attempt == 3  # second failure, backoff doubled
    assert steps(run)["charge"].due_at == start + dt.timedelta(seconds=11 + 20)
    sweep_at(start + dt.timedelta(seconds=40))
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert len(steps(run)["charge"].errors) == 2
    assert report(payments)["orders"]["o-2"]["charges"] == 1
    assert Timer.objects.count() == 0


def test_retry_after_is_honoured(olga, payments, eager_celery):
    flow = order_flow(olga, payments)
    control(payments, fail_next=1, fail_status=429, retry_after=120)
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(start), eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "o-3", "amount": 10}, actor="u")
    assert steps(run)["charge"].due_at == start + dt.timedelta(seconds=120)


def test_exhausted_retries_dead_letter_and_a_replay_keeps_the_key(olga, payments, eager_celery):
    flow = order_flow(olga, payments, retry={"max_attempts": 1})
    control(payments, fail_next=1, fail_status=503)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "o-4", "amount": 10}, actor="u")
    run.refresh_from_db()
    charge = steps(run)["charge"]
    assert (run.status, charge.status) == ("waiting", "dead_lettered")
    assert "answered 503" in charge.error and charge.errors[0]["attempt"] == 1
    key = charge.idempotency_key
    with eager_celery():
        driver.replay_dead_letter(run.pk, "charge", actor="user:olga")
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert steps(run)["charge"].idempotency_key == key
    assert "step.replayed" in event_types(run)


def test_replay_with_an_edited_input_bumps_the_revision_and_the_key(olga, payments, eager_celery):
    flow = order_flow(olga, payments, retry={"max_attempts": 1})
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "o-5", "amount": -1}, actor="u")
    charge = steps(run)["charge"]
    assert charge.status == "dead_lettered" and "422" in charge.error  # not retryable
    edited = {**charge.input, "json_body": {"order_id": "o-5", "amount": 15}}
    with eager_celery():
        driver.replay_dead_letter(
            run.pk, "charge", actor="user:olga", edited_input=edited, edited=True
        )
    charge = steps(run)["charge"]
    assert charge.status == "succeeded" and charge.revision == 1
    assert charge.idempotency_key == decider.idempotency_key(
        root_run_id=run.pk, node="charge", revision=1
    )
    replayed = Event.objects.get(stream=f"run:{run.pk}", type="step.replayed")
    assert replayed.actor == "user:olga" and replayed.payload["edited_input"] == edited


def test_discarding_a_dead_letter_fails_the_run(olga, payments, eager_celery):
    flow = order_flow(olga, payments, retry={"max_attempts": 1})
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "o-6", "amount": 0}, actor="u")
    driver.discard_dead_letter(run.pk, "charge", actor="user:olga", reason="customer cancelled")
    run.refresh_from_db()
    assert run.status == "failed" and "customer cancelled" in run.error
    assert steps(run)["charge"].status == "failed"


def test_a_delay_waits_on_a_timer_that_fires_once(olga, eager_celery, sweep_at):
    flow = publish(
        olga,
        chain(
            {"id": "wait", "type": "delay", "config": {"seconds": 3600}},
            {"id": "after", "type": "transform", "config": {"fields": {"done": True}}},
        ),
    )
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(start), eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    run.refresh_from_db()
    assert run.status == "waiting" and steps(run)["wait"].status == "waiting"
    timer = Timer.objects.get(run=run)
    later = start + dt.timedelta(hours=1, seconds=1)
    assert sweep_at(later)["timers"] == 1
    # A second sweeper, or a late countdown, finds nothing to fire.
    assert sweep_at(later)["timers"] == 0
    with clock.frozen_at(later):
        assert not driver.fire_timer(run.pk, "wait", timer.attempt, timer.kind)
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert event_types(run).count("step.succeeded") == 3


def _claim_and_die(run, node="charge"):
    """What a worker does before it is killed mid-call: commit step.started."""
    step = steps(run)[node]
    claimed = execute.claim_step(run.pk, node, step.attempt)
    assert claimed is not None
    return claimed


def test_an_expired_lease_reruns_an_idempotent_step_with_the_same_key(
    olga, payments, eager_celery, sweep_at
):
    flow = order_flow(olga, payments)
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(start):
        run = driver.start_run(flow=flow, input={"order_id": "o-7", "amount": 5}, actor="u")
        claimed = _claim_and_die(run)
        # The effect happened, but the worker died before recording it.
        perform.perform(claimed.connector, claimed.ctx)
    assert steps(run)["charge"].status == "running"
    assert sweep_at(start + dt.timedelta(seconds=10))["leases"] == 0
    assert sweep_at(start + dt.timedelta(seconds=claimed.lease_seconds + 1))["leases"] == 1
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert steps(run)["charge"].attempt == 2
    assert report(payments)["orders"]["o-7"]["charges"] == 1  # same key: no duplicate
    assert "step.lease_expired" in event_types(run)


def test_an_unsafe_step_whose_worker_died_is_an_outcome_unknown_dead_letter(
    olga, payments, sweep_at
):
    flow = order_flow(olga, payments)
    graph = flow.versions.get(number=1).graph
    for node in graph["nodes"]:
        if node["id"] == "charge":
            node["config"]["honours_idempotency_key"] = False
    flow = publish(olga, graph, slug="orders")
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(start):
        run = driver.start_run(flow=flow, input={"order_id": "o-8", "amount": 5}, actor="u")
        claimed = _claim_and_die(run)
    sweep_at(start + dt.timedelta(seconds=claimed.lease_seconds + 1))
    charge = steps(run)["charge"]
    assert charge.status == "dead_lettered" and charge.outcome_unknown
    run.refresh_from_db()
    assert run.status == "waiting"


def test_a_late_result_from_a_stale_attempt_changes_nothing(
    olga, payments, eager_celery, caplog, sweep_at
):
    flow = order_flow(olga, payments)
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(start):
        run = driver.start_run(flow=flow, input={"order_id": "o-9", "amount": 5}, actor="u")
        claimed = _claim_and_die(run)
    sweep_at(start + dt.timedelta(seconds=claimed.lease_seconds + 1))
    before = event_types(run)
    late = perform.Outcome(result=connectors.Result(output={"late": True}))
    assert execute.finish_step(run.pk, "charge", 1, late, eager=False) is None
    assert event_types(run) == before
    assert "late result of step charge attempt 1 discarded" in caplog.text


def test_a_long_chain_continues_in_new_tasks_past_the_inline_budget(olga, eager_celery, settings):
    settings.LEDGERFLOW_INLINE_STEP_BUDGET = 5
    nodes = [
        {"id": f"t{i}", "type": "transform", "config": {"fields": {"i": i}}} for i in range(12)
    ]
    flow = publish(olga, chain(*nodes))
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    run.refresh_from_db()
    assert run.status == "succeeded"
    # 13 steps in budgets of 5: the first transaction and two continuations.
    commits = Event.objects.filter(stream=run.stream).values("occurred_at").distinct().count()
    assert commits >= 3


def test_an_expression_error_dead_letters_with_a_clear_message(olga, eager_celery):
    flow = publish(olga, chain(transform("calc", x="{{ trigger.missing.deep }}")))
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    calc = steps(run)["calc"]
    assert calc.status == "dead_lettered"
    assert "trigger has no field missing (it is empty)" in calc.error


def test_cancelling_a_waiting_run(olga, eager_celery):
    flow = publish(olga, chain({"id": "wait", "type": "delay", "config": {"seconds": 60}}))
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    driver.cancel_run(run.pk, actor="user:olga", reason="no longer needed")
    run.refresh_from_db()
    assert run.status == "cancelled" and steps(run)["wait"].status == "cancelled"
    assert not Timer.objects.exists()


def test_runs_are_pinned_to_their_version(olga, eager_celery):
    flow = publish(olga, chain({"id": "a", "type": "transform", "config": {"fields": {"v": 1}}}))
    with eager_celery():
        first = driver.start_run(flow=flow, input={}, actor="u")
    flow = publish(olga, chain({"id": "a", "type": "transform", "config": {"fields": {"v": 2}}}))
    with eager_celery():
        second = driver.start_run(flow=flow, input={}, actor="u")
    assert (first.version_number, second.version_number) == (1, 2)
    assert Run.objects.get(pk=first.pk).output == {"a": {"v": 1}}
    assert Run.objects.get(pk=second.pk).output == {"a": {"v": 2}}


def test_rebuild_projections_derives_the_same_run_rows(olga, payments, eager_celery, sweep_at):
    """A mixed workload: success, a retry in flight, a dead letter, a delay,
    a cancellation; then every projection is dropped and derived again."""
    flow = order_flow(olga, payments, retry={"max_attempts": 2, "initial_seconds": 60})
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(start), eager_celery():
        driver.start_run(flow=flow, input={"order_id": "r-1", "amount": 5}, actor="user:olga")
        control(payments, fail_next=1)
        driver.start_run(flow=flow, input={"order_id": "r-2", "amount": 5}, actor="user:olga")
        driver.start_run(flow=flow, input={"order_id": "r-3", "amount": -5}, actor="user:olga")
    delay = publish(
        olga, chain({"id": "wait", "type": "delay", "config": {"seconds": 60}}), slug="d"
    )
    with clock.frozen_at(start), eager_celery():
        waiting = driver.start_run(flow=delay, input={}, actor="user:olga")
        cancelled = driver.start_run(flow=delay, input={}, actor="user:olga")
    driver.cancel_run(cancelled.pk, actor="user:olga", reason="test")
    assert waiting.status == "waiting"

    def snapshot():
        runs = list(Run.objects.order_by("pk").values())
        step_rows = list(Step.objects.order_by("run_id", "position").values())
        for row in step_rows:
            row.pop("id")
        timers = list(Timer.objects.order_by("run_id", "node_id").values())
        for row in timers:
            row.pop("id")
        return runs, step_rows, timers

    before = snapshot()
    assert len(before[2]) == 2  # the retry in flight and the delay
    Timer.objects.all().delete()
    Step.objects.all().delete()
    Run.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert snapshot() == before


def test_replaying_a_finished_run_is_a_new_run_with_new_keys(olga, payments, eager_celery):
    flow = order_flow(olga, payments)
    with eager_celery():
        first = driver.start_run(flow=flow, input={"order_id": "rp-1", "amount": 5}, actor="u")
    with eager_celery():
        second = driver.replay_run(first.pk, actor="user:olga")
    second.refresh_from_db()
    assert second.status == "succeeded" and second.replay_of_id == first.pk
    assert second.root_run_id == second.pk
    assert steps(second)["charge"].idempotency_key != steps(first)["charge"].idempotency_key
    # The remote saw two requests under two keys: a replay is a new effect.
    assert report(payments)["orders"]["rp-1"]["charges"] == 2


def test_replay_on_the_newest_version_picks_up_a_fix(olga, eager_celery):
    flow = publish(olga, chain(transform("a", v="{{ trigger.x.y }}")))
    with eager_celery():
        broken = driver.start_run(flow=flow, input={"x": {}}, actor="u")
    driver.discard_dead_letter(broken.pk, "a", actor="user:olga", reason="bug")
    flow = publish(olga, chain(transform("a", v="{{ trigger.x.y | default('none') }}")))
    with eager_celery():
        fixed = driver.replay_run(broken.pk, actor="user:olga", newest_version=True)
    fixed.refresh_from_db()
    assert (fixed.version_number, fixed.status, fixed.output) == (
        2,
        "succeeded",
        {"a": {"v": "none"}},
    )


def test_resuming_a_failed_run_does_not_rerun_what_succeeded(olga, payments, eager_celery):
    graph = chain(
        charge_node(payments),
        {"id": "ship", "type": "http.request", "config": {
            "method": "POST", "url": f"{payments.url}/nowhere", "honours_idempotency_key": True},
         "retry": {"max_attempts": 1}},
    )  # fmt: skip
    flow = publish(olga, graph, slug="ship")
    with eager_celery():
        failed = driver.start_run(flow=flow, input={"order_id": "rs-1", "amount": 5}, actor="u")
    assert steps(failed)["ship"].status == "dead_lettered"
    driver.discard_dead_letter(failed.pk, "ship", actor="user:olga", reason="route missing")
    fixed_graph = flow.versions.get(number=1).graph
    with eager_celery():
        resumed = driver.resume_run(failed.pk, actor="user:olga")
    by_node = steps(resumed)
    assert by_node["charge"].status == "succeeded" and by_node["charge"].started_at is None
    assert by_node["charge"].output == steps(failed)["charge"].output
    assert resumed.root_run_id == failed.pk and resumed.replay_of_id == failed.pk
    assert report(payments)["orders"]["rs-1"]["charges"] == 1  # the charge was not repeated
    assert fixed_graph  # same version: resumption does not change the graph
    with pytest.raises(driver.StartRefused, match="only a failed run can be resumed"):
        driver.resume_run(resumed.pk, actor="user:olga")


def saga_flow(olga, payments, *, refund_attempts=3, **settings):
    charge = charge_node(payments)
    charge["compensation"] = {
        "type": "http.request",
        "config": {
            "method": "POST",
            "url": f"{payments.url}/refunds",
            "json_body": {"charge_id": "{{ steps.charge.output.body.id }}"},
            "honours_idempotency_key": True,
        },
        "retry": {"max_attempts": refund_attempts, "initial_seconds": 5, "jitter": 0},
    }
    reserve = {
        "id": "reserve", "type": "http.request", "retry": {"max_attempts": 1},
        "config": {"method": "POST", "url": f"{payments.url}/inventory-is-down",
                   "honours_idempotency_key": True},
    }  # fmt: skip
    graph = chain(charge, reserve)
    if settings:
        graph["settings"] = settings
    return publish(olga, graph, slug="saga")


def test_a_failed_saga_refunds_the_charge_exactly_once(olga, payments, eager_celery):
    flow = saga_flow(olga, payments)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "s-1", "amount": 9}, actor="u")
    assert steps(run)["reserve"].status == "dead_lettered"
    with eager_celery():
        driver.discard_dead_letter(run.pk, "reserve", actor="user:olga", reason="no stock")
    run.refresh_from_db()
    by_node = steps(run)
    assert run.status == "compensated" and "no stock" in run.error
    assert by_node["charge"].status == "compensated"
    undo = by_node["charge~undo"]
    assert undo.status == "succeeded" and undo.input["json_body"]["charge_id"].startswith("ch_")
    assert undo.idempotency_key == decider.idempotency_key(
        root_run_id=run.pk, node="charge", phase="undo"
    )
    assert report(payments)["refunds"] == 1
    assert verify_stream(run.stream) is None


def test_a_compensation_that_cannot_complete_is_a_critical_dead_letter(
    olga, payments, eager_celery, sweep_at
):
    flow = saga_flow(olga, payments, refund_attempts=1)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "s-2", "amount": 9}, actor="u")
    control(payments, fail_next=1, fail_status=503)
    with eager_celery():
        driver.discard_dead_letter(run.pk, "reserve", actor="user:olga", reason="no stock")
    run.refresh_from_db()
    undo = steps(run)["charge~undo"]
    assert (run.status, undo.status) == ("compensating", "dead_lettered")
    dead = Event.objects.get(
        stream=run.stream, type="step.dead_lettered", payload__node="charge~undo"
    )
    assert dead.payload["severity"] == "critical"
    with eager_celery():
        driver.replay_dead_letter(run.pk, "charge~undo", actor="user:olga")
    run.refresh_from_db()
    assert run.status == "compensated" and report(payments)["refunds"] == 1


def test_cancelling_compensates_what_ran_when_the_flow_says_so(olga, payments, eager_celery):
    def flow_with(**settings):
        charge = charge_node(payments)
        charge["compensation"] = {
            "type": "http.request",
            "config": {"method": "POST", "url": f"{payments.url}/refunds",
                       "json_body": {"charge_id": "{{ steps.charge.output.body.id }}"},
                       "honours_idempotency_key": True},
        }  # fmt: skip
        graph = chain(charge, {"id": "wait", "type": "delay", "config": {"seconds": 600}})
        graph["settings"] = settings
        return publish(olga, graph, slug="cancel-saga")

    flow = flow_with(compensate_on_cancel=True)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "c-1", "amount": 3}, actor="u")
    with eager_celery():
        driver.cancel_run(run.pk, actor="user:olga", reason="customer changed mind")
    run.refresh_from_db()
    assert run.status == "compensated" and report(payments)["refunds"] == 1
    flow = flow_with(compensate_on_cancel=False)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "c-2", "amount": 3}, actor="u")
    with eager_celery():
        driver.cancel_run(run.pk, actor="user:olga", reason="no refund wanted")
    run.refresh_from_db()
    assert run.status == "cancelled" and report(payments)["refunds"] == 1
