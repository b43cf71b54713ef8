"""Call sub-flow: the parent step starts one child run (keyed on its own
idempotency key), waits, and resumes when the child finishes: on the child's
terminal commit, or by the recovery sweep if that message is lost."""

import datetime as dt
import io

import pytest
from django.core.management import call_command

from runs import decider, driver, execute, perform
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run, Step
from tests.engine_helpers import chain, publish, transform

START = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def child_flow(olga, *, broken=False):
    graph = chain(
        {"id": "settle", "type": "delay", "config": {"seconds": 60}},
        transform("done", doubled="{{ trigger.x * 2 }}"),
    )
    if broken:
        graph["nodes"][2] = transform("done", v="{{ trigger.missing.deep }}")
    return publish(olga, graph, slug="child")


def parent_flow(olga, on_failure="fail"):
    graph = chain(
        {"id": "call", "type": "subflow",
         "config": {"flow": "child", "input": {"x": "{{ trigger.x }}"}, "on_failure": on_failure}},
        transform("after", got="{{ steps.call.output.output.done.doubled }}"),
    )  # fmt: skip
    graph["nodes"].append(transform("fallback", status="{{ steps.call.output.status }}"))
    graph["edges"].append({"from": "call", "from_port": "failed", "to": "fallback"})
    return publish(olga, graph, slug="parent")


def step(run, node) -> Step:
    return Step.objects.get(run=run, node_id=node)


def start_parent(olga, eager_celery, **kwargs):
    child_flow(olga, broken=kwargs.pop("broken", False))
    flow = parent_flow(olga, **kwargs)
    with clock.frozen_at(START), eager_celery():
        parent = driver.start_run(flow=flow, input={"x": 21}, actor="u")
    return parent, Run.objects.get(parent_run_id=parent.pk)


def test_the_parent_waits_for_its_child_and_resumes_with_its_output(olga, eager_celery, sweep_at):
    parent, child = start_parent(olga, eager_celery)
    call = step(parent, "call")
    assert (call.status, call.wait_reason) == ("waiting", "subflow")
    assert (child.parent_node, child.status) == ("call", "waiting")
    assert child.parent_key == call.idempotency_key
    started = Event.objects.get(stream=child.stream, type="run.started")
    assert started.payload["parent"] == {"run_id": parent.pk, "node": "call",
                                         "key": call.idempotency_key}  # fmt: skip

    later = START + dt.timedelta(seconds=61)
    sweep_at(later)  # fires the child's timer; its end signals the parent
    parent.refresh_from_db()
    assert parent.status == "succeeded"
    assert parent.output == {"after": {"got": 42}}
    assert step(parent, "call").output["child_run_id"] == child.pk
    signal = Event.objects.get(stream=parent.stream, type="step.succeeded", payload__node="call")
    assert signal.actor == f"run:{child.pk}"


def test_a_lost_signal_is_resent_by_the_sweep(olga, eager_celery, sweep_at):
    parent, child = start_parent(olga, eager_celery)
    later = START + dt.timedelta(seconds=61)
    with clock.frozen_at(later):
        # The child finishes, but the message to its parent is never sent.
        assert driver.fire_timer(child.pk, "settle", 1, "timer")
    child.refresh_from_db()
    assert child.status == "succeeded" and step(parent, "call").status == "waiting"
    assert sweep_at(later)["subflows"] == 1
    assert sweep_at(later)["subflows"] == 0  # once
    parent.refresh_from_db()
    assert parent.status == "succeeded"


def test_a_retried_parent_step_does_not_start_a_second_child(olga, sweep_at):
    child_flow(olga)
    flow = parent_flow(olga)
    with clock.frozen_at(START):
        parent = driver.start_run(flow=flow, input={"x": 1}, actor="u")
        claimed = execute.claim_step(parent.pk, "call", 1)
        perform.perform(claimed.connector, claimed.ctx)  # starts the child, then the worker dies
    later = START + dt.timedelta(seconds=claimed.lease_seconds + 1)
    assert sweep_at(later)["leases"] == 1
    assert step(parent, "call").attempt == 2
    assert Run.objects.filter(parent_run_id=parent.pk).count() == 1
    # The rerun found its child (already past its delay) and took its result.
    parent.refresh_from_db()
    assert parent.status == "succeeded" and parent.output == {"after": {"got": 2}}


def test_a_failed_child_leaves_by_the_failed_port_when_asked(olga, eager_celery, sweep_at):
    parent, child = start_parent(olga, eager_celery, on_failure="port", broken=True)
    later = START + dt.timedelta(seconds=61)
    sweep_at(later)
    assert step(child, "done").status == "dead_lettered"
    with eager_celery():
        driver.discard_dead_letter(child.pk, "done", actor="user:olga", reason="bad input")
    parent.refresh_from_db()
    assert parent.status == "succeeded"
    assert step(parent, "call").port == "failed"
    assert step(parent, "fallback").output == {"status": "failed"}
    assert step(parent, "after").status == "skipped"


def test_a_failed_child_dead_letters_the_parent_step_by_default(olga, eager_celery, sweep_at):
    parent, child = start_parent(olga, eager_celery, broken=True)
    later = START + dt.timedelta(seconds=61)
    sweep_at(later)
    with eager_celery():
        driver.discard_dead_letter(child.pk, "done", actor="user:olga", reason="bad input")
    call = step(parent, "call")
    assert call.status == "dead_lettered"
    assert f"sub-flow run {child.pk} ended failed" in call.error
    parent.refresh_from_db()
    assert parent.status == "waiting"


def test_a_flow_cannot_call_itself(olga, eager_celery):
    graph = chain({"id": "call", "type": "subflow", "config": {"flow": "loop-self"}})
    flow = publish(olga, graph, slug="loop-self")
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    call = step(run, "call")
    assert call.status == "dead_lettered" and "cannot call itself" in call.error


def test_the_child_link_survives_a_projection_rebuild(olga, eager_celery):
    parent, child = start_parent(olga, eager_celery)
    Run.objects.filter(pk=child.pk).update(parent_run_id=None, parent_node="", parent_key="")
    call_command("rebuild_projections", stdout=io.StringIO())
    rebuilt = Run.objects.get(pk=child.pk)
    assert (rebuilt.parent_run_id, rebuilt.parent_node) == (parent.pk, "call")
    assert rebuilt.parent_key == step(parent, "call").idempotency_key


def test_a_signal_error_dead_letters_a_waiting_step():
    """The decider side: a failure signal moves waiting to dead-lettered."""
    from runs.decider import RunState, Signal, evolve
    from runs.graph_facts import build_graph

    graph = build_graph(
        {"nodes": [{"id": "start", "type": "trigger.manual", "config": {}, "retry": {}},
                   {"id": "call", "type": "subflow", "config": {"flow": "x"},
                    "retry": {"max_attempts": 1}}],
         "edges": [{"from": "start", "to": "call", "from_port": "out"}]}
    )  # fmt: skip
    state = RunState(run_id=1)
    for event in [
        ("run.started", {"input": {}, "root_run_id": 1, "nodes": ["start", "call"]}),
        ("step.scheduled", {"node": "call", "attempt": 1, "revision": 0}),
        ("step.started", {"node": "call", "attempt": 1, "input": {}, "idempotency_key": "k",
                          "lease_until": None}),
        ("step.waiting", {"node": "call", "attempt": 1, "reason": "subflow", "due_at": None}),
    ]:  # fmt: skip
        state = evolve(state, event)
    events = decider.decide(state, Signal("call", 1, "subflow", error="child failed"), graph)
    assert [kind for kind, _ in events] == ["step.dead_lettered"]
    assert evolve(state, events[0]).steps["call"].status == "dead_lettered"
    with pytest.raises(decider.StaleCommand):
        decider.decide(state, Signal("call", 1, "approval"), graph)


def test_the_run_pages_link_parent_and_child(olga, eager_celery, client):
    from tests.conftest import login

    parent, child = start_parent(olga, eager_celery)
    login(client, olga)
    parent_page = client.get(f"/runs/{parent.pk}/").content.decode()
    assert f'href="/runs/{child.pk}/"' in parent_page
    child_page = client.get(f"/runs/{child.pk}/").content.decode()
    assert f'started by <a href="/runs/{parent.pk}/">run {parent.pk}</a>' in child_page


def test_cancelling_the_parent_cancels_its_waiting_child(olga, eager_celery):
    parent, child = start_parent(olga, eager_celery)
    with eager_celery():
        driver.cancel_run(parent.pk, actor="user:olga", reason="order withdrawn")
    child.refresh_from_db()
    assert step(parent, "call").status == "cancelled"
    assert child.status == "cancelled" and child.error == f"run {parent.pk} no longer waits for it"
    assert Event.objects.get(stream=child.stream, type="run.cancelled").actor == f"run:{parent.pk}"


def test_the_sweep_cancels_a_child_whose_parent_message_was_lost(olga, eager_celery, sweep_at):
    parent, child = start_parent(olga, eager_celery)
    driver.cancel_run(parent.pk, actor="user:olga", reason="order withdrawn")  # message lost
    assert Run.objects.get(pk=child.pk).status == "waiting"
    assert sweep_at(START)["orphans"] == 1
    assert sweep_at(START)["orphans"] == 0
    assert Run.objects.get(pk=child.pk).status == "cancelled"
