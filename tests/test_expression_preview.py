"""The editor's expression preview (POST /api/v1/flows/{slug}/expressions/
preview): a field rendered at its node through the engine's own sandbox and
budget, against the draft's pinned outputs or else the latest run's, with
errors in words and never a 500."""

import time

import pytest
from django.urls import reverse

from flows import services
from runs import driver
from tests.conftest import login
from tests.engine_helpers import READY, chain, publish, transform

GRAPH = chain(
    transform("shape", amount="{{ trigger.amount }}", note="{{ trigger.note }}"),
    transform("lookup", id="C-{{ trigger.amount }}"),
    transform("use", total="{{ steps.shape.output.amount * 2 }}"),
)
NESTED = (
    "{% for i in range(300) %}{% for j in range(300) %}{% for k in range(300) %}"
    "{% endfor %}{% endfor %}{% endfor %}done"
)


def preview(client, slug="preview", **body):
    url = reverse("api:expression_preview", kwargs={"slug": slug})
    return client.post(url, body, content_type="application/json")


@pytest.fixture
def flow(olga, make_flow):
    flow = make_flow(olga, slug="preview", owner=olga, **READY)
    return services.flow_save_draft(flow=flow, actor=olga, graph=GRAPH)


def test_without_runs_or_pins_a_step_has_no_sample_yet(client, olga, flow):
    login(client, olga)
    answer = preview(client, node="use", expression="{{ steps.shape.output.amount }}").json()
    assert answer["error"] == "no sample of steps.shape yet: run a test, or pin its output"
    assert answer["sources"] == {"start": "none", "shape": "none", "lookup": "none",
                                 "trigger": "none"}  # fmt: skip
    # The trigger can be tried with a sample input of one's own.
    answer = preview(client, node="shape", expression="{{ trigger.amount + 1 }}",
                     sample={"amount": 41}).json()  # fmt: skip
    assert (answer["value"], answer["error"]) == (42, None)


def test_pinned_outputs_in_the_draft_are_the_sample(client, olga, flow):
    pinned = {"start": {"amount": 5, "note": "gift"}, "shape": {"amount": 5, "note": "gift"},
              "lookup": {"id": "C-5"}}  # fmt: skip
    services.flow_save_draft(flow=flow, actor=olga, graph={**GRAPH, "pinned": pinned})
    login(client, olga)
    answer = preview(client, node="use", field="config.fields.total").json()
    assert (answer["value"], answer["error"]) == (10, None)
    assert answer["context"]["trigger"] == {"amount": 5, "note": "gift"}
    assert answer["context"]["steps"]["lookup"] == {"output": {"id": "C-5"}}
    assert answer["sources"]["shape"] == "pinned"
    text = preview(client, node="use", expression="{{ steps.lookup.output.id }} for "
                   "{{ trigger.note }}").json()  # fmt: skip
    assert text["value"] == "C-5 for gift"


def test_the_latest_run_is_the_sample_when_nothing_is_pinned(client, olga, flow, eager_celery):
    flow = publish(olga, GRAPH, slug="preview")
    with eager_celery():
        driver.start_run(flow=flow, input={"amount": 1, "note": "old"}, actor="user:olga")
        latest = driver.start_run(flow=flow, input={"amount": 7, "note": "new"},
                                  actor="user:olga")  # fmt: skip
    login(client, olga)
    answer = preview(client, node="use", field="config.fields.total").json()
    assert (answer["value"], answer["error"]) == (14, None)
    assert answer["sources"]["shape"] == f"run {latest.pk}"
    assert answer["context"]["steps"]["shape"]["output"] == {"amount": 7, "note": "new"}
    # Steps after the node are not in its sample: the same words as at run time.
    answer = preview(client, node="shape", expression="{{ steps.use.output.total }}").json()
    assert answer["error"] == "steps.use is not a step before this node (earlier steps: start)"


def test_an_unsaved_graph_from_the_editor_is_previewed(client, olga, flow):
    login(client, olga)
    graph = {**GRAPH, "pinned": {"start": {"amount": 2}, "shape": {"amount": 2, "note": "x"},
                                 "lookup": {"id": "C-2"}}}  # fmt: skip
    answer = preview(client, node="use", expression="{{ steps.shape.output.body }}",
                     graph=graph).json()  # fmt: skip
    assert answer["error"] == "steps.shape has no field body (it has: amount, note)"
    answer = preview(client, node="use", expression="{{ trigger.amuont }}", graph=graph).json()
    assert answer["error"] == "trigger has no field amuont (it has: amount)"
    answer = preview(client, node="use", expression="{{ trigger. }}", graph=graph).json()
    assert answer["error"].startswith("expected name or number")


def test_a_runaway_expression_answers_with_its_budget_not_a_500(client, olga, flow, settings):
    settings.LEDGERFLOW_EXPRESSION_BUDGET_MS = 100
    login(client, olga)
    started = time.monotonic()
    response = preview(client, node="use", expression=NESTED, sample={})
    assert response.status_code == 200
    assert response.json()["error"] == "expression exceeded its time budget (100 ms)"
    assert time.monotonic() - started < 2.0
    huge = preview(client, node="use", expression="{{ 'x' * 10 ** 6 }}").json()
    assert huge["error"] == "repetition would exceed the output cap"


def test_a_value_json_cannot_carry_is_shown_as_text(client, olga, flow):
    login(client, olga)
    answer = preview(client, node="use", expression="{{ range(3) }}").json()
    assert (answer["value"], answer["error"]) == ("range(0, 3)", None)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"node": "ghost", "expression": "1"}, "the draft has no node called “ghost”"),
        ({"node": "use", "field": "config.fields.nope"},
         "node “use” has no field config.fields.nope"),
        ({"node": "use", "field": "config.fields"},
         "field config.fields of node “use” is not text"),
        ({"node": "use", "graph": {"nodes": 3}}, "a graph has a list of nodes and a list of edges"),
    ],
)  # fmt: skip
def test_requests_naming_what_the_draft_lacks_are_400_with_the_reason(
    client, olga, flow, body, detail
):
    login(client, olga)
    response = preview(client, **body)
    assert response.status_code == 400 and response.json()["error"]["message"] == detail


def test_only_those_who_may_edit_the_flow_preview(client, rita, flow):
    login(client, rita)
    response = preview(client, node="use", expression="{{ 1 }}")
    assert response.status_code == 403


def test_a_compensation_field_also_reads_its_own_node(client, olga, flow):
    pinned = {"start": {"amount": 5}, "shape": {"amount": 5, "note": "x"},
              "lookup": {"id": "C-5"}, "use": {"total": 10}}  # fmt: skip
    services.flow_save_draft(flow=flow, actor=olga, graph={**GRAPH, "pinned": pinned})
    login(client, olga)
    expression = "refund {{ steps.use.output.total }}"
    answer = preview(client, node="use", expression=expression, undo=True).json()
    assert (answer["value"], answer["error"]) == ("refund 10", None)
    forward = preview(client, node="use", expression=expression).json()
    assert forward["error"] == (
        "steps.use is not a step before this node (earlier steps: start, shape, lookup)"
    )


@pytest.mark.parametrize(
    "graph",
    [
        {"nodes": [{"id": "use", "type": ["x"]}, {"id": ["a"]}, "junk"], "edges": []},
        {"nodes": [{"id": "use", "type": "transform"}], "edges": [{"from": ["a"], "to": "use"}, 3]},
        {"nodes": [{"id": "use"}], "edges": [], "pinned": ["not", "a", "dict"]},
    ],
)
def test_a_malformed_draft_previews_what_it_can_and_never_500s(client, olga, flow, graph):
    login(client, olga)
    answer = preview(client, node="use", expression="{{ trigger }}", graph=graph)
    assert answer.status_code == 200
    assert answer.json()["value"] == {}
