"""Switch, merge and wait-until, driven in-process against PostgreSQL."""

import datetime as dt

import pytest

from flows.graph import InvalidGraph, validate
from runs import driver
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Step, Timer
from tests.engine_helpers import chain, publish, transform

START = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def statuses(run) -> dict[str, str]:
    return dict(Step.objects.filter(run=run).values_list("node_id", "status"))


def switch_graph(**edge_ports) -> dict:
    graph = chain(
        {
            "id": "route",
            "type": "switch",
            "config": {
                "value": "{{ trigger.country }}",
                "cases": [{"equals": "FR", "port": "france"}, {"equals": "DE", "port": "germany"}],
                "default_port": "elsewhere",
            },
        }
    )
    for node, port in edge_ports.items():
        graph["nodes"].append(transform(node, went=port))
        graph["edges"].append({"from": "route", "from_port": port, "to": node})
    return graph


# --- switch -------------------------------------------------------------------


def test_a_switch_leaves_by_the_matching_case_or_the_default(olga, eager_celery):
    flow = publish(olga, switch_graph(fr="france", de="germany", other="elsewhere"))
    with eager_celery():
        german = driver.start_run(flow=flow, input={"country": "DE"}, actor="u")
        swiss = driver.start_run(flow=flow, input={"country": "CH"}, actor="u")
    assert statuses(german) == {"start": "succeeded", "route": "succeeded", "fr": "skipped",
                                "de": "succeeded", "other": "skipped"}  # fmt: skip
    assert statuses(swiss)["other"] == "succeeded" and statuses(swiss)["de"] == "skipped"
    assert Step.objects.get(run=swiss, node_id="route").port == "elsewhere"


def test_an_edge_from_a_port_the_switch_does_not_declare_is_refused():
    with pytest.raises(InvalidGraph) as caught:
        validate(switch_graph(es="spain"))
    assert "has no port “spain” (ports: france, germany, elsewhere)" in str(caught.value)


def test_a_switch_with_two_cases_on_one_port_is_refused():
    graph = switch_graph()
    graph["nodes"][1]["config"]["cases"][1]["port"] = "france"
    with pytest.raises(InvalidGraph, match="two cases use the same port"):
        validate(graph)


# --- merge --------------------------------------------------------------------


def race_graph(mode: str, losers: str = "ignore") -> dict:
    """A slow branch (a delay) and a fast one (a transform) into a merge."""
    return {
        "nodes": [
            {"id": "start", "type": "trigger.manual"},
            {"id": "slow", "type": "delay", "config": {"seconds": 600}},
            transform("fast", v="fast"),
            {"id": "join", "type": "merge", "config": {"mode": mode, "losers": losers}},
            transform("after", n="{{ steps.join.output.arrived | length }}"),
        ],
        "edges": [
            {"from": "start", "to": "slow"},
            {"from": "start", "to": "fast"},
            {"from": "slow", "to": "join"},
            {"from": "fast", "to": "join"},
            {"from": "join", "to": "after"},
        ],
    }


def test_merge_all_waits_for_every_branch(olga, eager_celery, sweep_at):
    flow = publish(olga, race_graph("all"), slug="merge-all")
    with clock.frozen_at(START), eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    assert statuses(run)["join"] == "pending" and statuses(run)["slow"] == "waiting"
    sweep_at(START + dt.timedelta(seconds=601))
    run.refresh_from_db()
    assert run.status == "succeeded"
    join = Step.objects.get(run=run, node_id="join")
    assert set(join.output["arrived"]) == {"slow", "fast"}
    assert run.output == {"after": {"n": 2}}


def test_merge_first_goes_on_with_the_first_branch_and_ignores_the_rest(
    olga, eager_celery, sweep_at
):
    flow = publish(olga, race_graph("first", "ignore"), slug="merge-first")
    with clock.frozen_at(START), eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    by_node = statuses(run)
    assert by_node["join"] == "succeeded" and by_node["after"] == "succeeded"
    assert by_node["slow"] == "waiting"  # still running; its result will be unused
    assert Step.objects.get(run=run, node_id="join").output == {"arrived": {"fast": {"v": "fast"}}}
    sweep_at(START + dt.timedelta(seconds=601))
    run.refresh_from_db()
    assert run.status == "succeeded" and statuses(run)["slow"] == "succeeded"
    assert Event.objects.filter(stream=run.stream, type="step.succeeded",
                                payload__node="join").count() == 1  # fmt: skip


def test_merge_first_can_cancel_the_branches_that_lost(olga, eager_celery):
    flow = publish(olga, race_graph("first", "cancel"), slug="merge-cancel")
    with clock.frozen_at(START), eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert statuses(run)["slow"] == "cancelled"
    assert not Timer.objects.filter(run=run).exists()  # the slow branch's timer is gone
    cancelled = Event.objects.get(stream=run.stream, type="step.cancelled")
    assert cancelled.payload == {"node": "slow", "reason": "join fired"}


def test_a_branch_that_also_leads_elsewhere_is_not_cancelled(olga, eager_celery):
    graph = race_graph("first", "cancel")
    graph["nodes"].append(transform("side", v=1))
    graph["edges"].append({"from": "slow", "to": "side"})
    flow = publish(olga, graph, slug="merge-shared")
    with clock.frozen_at(START), eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    assert statuses(run)["slow"] == "waiting" and statuses(run)["join"] == "succeeded"


# --- wait until ---------------------------------------------------------------


def test_wait_until_holds_the_run_until_the_absolute_time(olga, eager_celery, sweep_at):
    graph = chain({"id": "hold", "type": "wait.until", "config": {"until": "{{ trigger.at }}"}},
                  transform("after", done=True))  # fmt: skip
    flow = publish(olga, graph, slug="wait-until")
    due = START + dt.timedelta(hours=2)
    with clock.frozen_at(START), eager_celery():
        run = driver.start_run(flow=flow, input={"at": due.isoformat()}, actor="u")
    hold = Step.objects.get(run=run, node_id="hold")
    assert hold.status == "waiting" and hold.due_at == due
    assert sweep_at(due - dt.timedelta(seconds=1))["timers"] == 0
    assert statuses(run)["after"] == "pending"
    assert sweep_at(due)["timers"] == 1
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_wait_until_without_a_time_zone_dead_letters_with_a_clear_message(olga, eager_celery):
    graph = chain({"id": "hold", "type": "wait.until", "config": {"until": "2026-12-01T10:00"}})
    flow = publish(olga, graph, slug="wait-naive")
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    hold = Step.objects.get(run=run, node_id="hold")
    assert hold.status == "dead_lettered" and "time zone" in hold.error


def test_a_losing_branch_that_dead_lettered_is_cancelled_when_the_merge_fires(
    olga, payments, eager_celery, sweep_at
):
    graph = race_graph("first", "cancel")
    graph["nodes"][1] = {"id": "slow", "type": "http.request", "retry": {"max_attempts": 1},
                         "config": {"method": "POST", "url": f"{payments.url}/nowhere",
                                    "honours_idempotency_key": True}}  # fmt: skip
    graph["nodes"][2] = {"id": "fast", "type": "delay", "config": {"seconds": 10}}
    flow = publish(olga, graph, slug="merge-dead-loser")
    with clock.frozen_at(START), eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    assert statuses(run)["slow"] == "dead_lettered" and statuses(run)["join"] == "pending"
    sweep_at(START + dt.timedelta(seconds=11))
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert statuses(run)["slow"] == "cancelled"
    assert Step.objects.get(run=run, node_id="join").output == {"arrived": {"fast": {"until": (
        START + dt.timedelta(seconds=10)).isoformat()}}}  # fmt: skip
