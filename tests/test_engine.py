"""The run engine, driven in-process against real PostgreSQL and a real
local payments API. Time is moved with the one clock."""

import datetime as dt
import io

import httpx
import pytest
from django.core.management import call_command

from runs import clock, decider, driver, sweeper
from runs.eventstore import verify_stream
from runs.models import Event, Run, Step, Timer
from tests.engine_helpers import chain, publish, transform


def charge_node(payments, **overrides) -> dict:
    node = {
        "id": "charge",
        "type": "http.request",
        "config": {
            "method": "POST",
            "url": f"{payments.url}/charges",
            "json_body": {"order_id": "{{ trigger.order_id }}", "amount": "{{ trigger.amount }}"},
            "honours_idempotency_key": True,
            "timeout_seconds": 5,
        },
        "retry": {"max_attempts": 3, "initial_seconds": 10, "jitter": 0},
    }
    node.update(overrides)
    return node


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


def control(payments, **settings):
    httpx.post(f"{payments.url}/control", json=settings).raise_for_status()


def report(payments) -> dict:
    return httpx.get(f"{payments.url}/report").json()


@pytest.fixture
def sweep_at(eager_celery):
    """Sweep at ``moment``, running what it dispatches before returning."""

    def sweep(moment):
        with clock.frozen_at(moment), eager_celery():
            return sweeper.sweep(moment)

    return sweep


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
    claimed = driver._claim(run.pk, node, step.attempt)
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
        driver.perform(claimed.connector, claimed.ctx)
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
    late = driver.Outcome(result=driver.connectors.Result(output={"late": True}))
    assert driver._finish(run.pk, "charge", 1, late, eager=False) is None
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
    assert "trigger.missing.deep is undefined" in calc.error


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
