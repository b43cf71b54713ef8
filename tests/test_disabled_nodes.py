"""A disabled node stays in the flow but is not run: no connector call, its
input passes through as its output (n8n's behaviour), expressions naming it
read that, and its event says it was disabled. A disabled trigger, or a
disabled node with several inputs, is refused at validation."""

import io

import pytest
from django.core.management import call_command

from flows.graph import InvalidGraph, validate
from runs import driver
from runs.ground.models import Event
from runs.models import Run, Step
from tests.engine_helpers import chain, publish, transform
from tests.localserver import Reply
from tests.projection_helpers import differences, projected_rows


def charge(url: str, **extra) -> dict:
    return {
        "id": "charge",
        "type": "http.request",
        "config": {"method": "POST", "url": url, "json_body": {"amount": "{{ trigger.amount }}"},
                   "timeout_seconds": 5},
        **extra,
    }  # fmt: skip


def disabled_charge_flow(olga, url: str):
    graph = chain(
        transform("shape", amount="{{ trigger.amount }}", note="card"),
        charge(
            url,
            disabled=True,
            compensation={
                "type": "http.request",
                "config": {"method": "POST", "url": url + "/refund"},
            },
        ),  # fmt: skip
        transform("after", seen="{{ steps.charge.output.amount }}"),
    )
    return publish(olga, graph, slug="disabled")


def test_a_disabled_http_node_makes_no_call_and_passes_its_input_on(
    olga, local_server, eager_celery
):
    server = local_server({"/charges": lambda seen: Reply(201, {"id": "ch_1"})})
    flow = disabled_charge_flow(olga, server.url + "/charges")
    with eager_celery():
        run = driver.start_run(flow=flow, input={"amount": 42}, actor="user:olga")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert server.seen == []
    steps = {s.node_id: s for s in Step.objects.filter(run=run)}
    passed = {"amount": 42, "note": "card"}
    assert steps["charge"].status == "succeeded"
    assert steps["charge"].output == passed == steps["charge"].input
    assert steps["after"].output == {"seen": 42}
    succeeded = Event.objects.get(stream=run.stream, type="step.succeeded",
                                  payload__node="charge")  # fmt: skip
    assert succeeded.payload["disabled"] is True and succeeded.payload["output"] == passed
    enabled = Event.objects.get(stream=run.stream, type="step.succeeded", payload__node="shape")
    assert "disabled" not in enabled.payload


def test_a_disabled_step_sent_to_a_worker_still_makes_no_call(olga, local_server, settings):
    """A disabled step left scheduled when the inline budget ran out may be
    re-sent by the sweep as the side-effecting step it would be."""
    server = local_server({"/charges": lambda seen: Reply(201, {"id": "ch_1"})})
    flow = disabled_charge_flow(olga, server.url + "/charges")
    settings.LEDGERFLOW_INLINE_STEP_BUDGET = 2  # the trigger and shape
    run = driver.start_run(flow=flow, input={"amount": 5}, actor="user:olga")
    assert Step.objects.get(run=run, node_id="charge").status == "scheduled"
    driver.execute_step(run.pk, "charge", 1)
    run.refresh_from_db()
    assert server.seen == []
    assert Step.objects.get(run=run, node_id="charge").output == {"amount": 5, "note": "card"}
    assert run.status == "succeeded" and run.output == {"after": {"seen": 5}}


def test_a_disabled_node_is_not_compensated_when_the_run_fails_later(
    olga, local_server, eager_celery
):
    server = local_server({"/charges": lambda seen: Reply(201, {"id": "ch_1"})})
    flow = disabled_charge_flow(olga, server.url + "/charges")
    graph = flow.versions.first().graph
    graph["nodes"][-1] = {**transform("after", late="{{ trigger.missing.deep }}"),
                          "on_failure": "fail_run"}  # fmt: skip
    flow = publish(olga, graph, slug="disabled")
    with eager_celery():
        run = driver.start_run(flow=flow, input={"amount": 42}, actor="user:olga")
    run.refresh_from_db()
    assert run.status in ("failed", "compensated"), run.status
    assert server.seen == []  # neither the charge nor its refund
    assert not Step.objects.filter(run=run, node_id="charge~undo").exists()


def test_runs_through_a_disabled_node_rebuild_to_the_same_rows(olga, local_server, eager_celery):
    server = local_server({"/charges": lambda seen: Reply(201, {"id": "ch_1"})})
    flow = disabled_charge_flow(olga, server.url + "/charges")
    with eager_celery():
        for amount in (1, 2):
            driver.start_run(flow=flow, input={"amount": amount}, actor="user:olga")
    before = projected_rows()
    Step.objects.all().delete()
    Run.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    after = projected_rows()
    assert {table: differences(rows, after[table]) for table, rows in before.items()} == {
        table: [] for table in before
    }


def test_the_published_graph_keeps_disabled_only_where_it_is_set():
    graph = validate(chain(transform("a", x=1), {**transform("b", y=2), "disabled": True}))
    assert [n.get("disabled") for n in graph["nodes"]] == [None, None, True]


def errors_of(graph) -> list[tuple]:
    with pytest.raises(InvalidGraph) as caught:
        validate(graph)
    return [(e.node, e.field, e.message) for e in caught.value.errors]


def test_a_disabled_trigger_is_refused():
    graph = chain(transform("a", x=1))
    graph["nodes"][0]["disabled"] = True
    assert errors_of(graph) == [
        ("start", "disabled", "a flow needs an enabled trigger; enable this one")
    ]


def test_a_disabled_node_with_two_inputs_is_refused():
    graph = {
        "nodes": [
            {"id": "start", "type": "trigger.manual"},
            transform("a", x=1),
            transform("b", x=2),
            {**transform("both", x=3), "disabled": True},
        ],
        "edges": [
            {"from": "start", "to": "a"},
            {"from": "start", "to": "b"},
            {"from": "a", "to": "both"},
            {"from": "b", "to": "both"},
        ],
    }
    [(node, field, message)] = errors_of(graph)
    assert (node, field) == ("both", "disabled")
    assert message.startswith("a disabled node passes its one input through, and this one has 2")


def test_disabled_must_be_a_boolean():
    graph = chain({**transform("a", x=1), "disabled": "yes"})
    [(node, field, message)] = errors_of(graph)
    assert (node, field) == ("a", "disabled") and "is not of type 'boolean'" in message
