"""Read-only diagrams: the flow page draws the published graph for every role
that reads flows (reviewers included, who still may not edit it); the run
page and GET /api/v1/runs/{id}/diagram draw the run's pinned graph painted by
its steps' states, with the run page's permission check."""

import html
import json
import re
from pathlib import Path

import pytest
from django.urls import reverse

from flows import services
from flows.diagram import drawable
from runs import driver
from runs.diagram import node_states
from tests.conftest import login
from tests.engine_helpers import chain, publish, transform
from tests.test_order_saga import control, saga_graph

CASES = Path(__file__).resolve().parent.parent / "flows/editor/src/nodeStates.cases.json"
WAIT = {"id": "wait", "type": "delay", "config": {"seconds": 600}}


def states(page: str):
    """The step rows the run page's live fragment carries for the diagram."""
    found = re.search(r'<div id="run-diagram-states" hidden data-states="([^"]*)">', page)
    return json.loads(html.unescape(found.group(1)))


def embedded(page: str, element_id: str):
    """The JSON a json_script element carries, or None when it is absent."""
    pattern = rf'<script id="{element_id}" type="application/json">(.*?)</script>'
    found = re.search(pattern, page, re.S)
    return json.loads(found.group(1)) if found else None


def test_a_reviewer_sees_the_published_diagram_on_the_flow_page(client, olga, rita):
    flow = publish(olga, chain(transform("shape", amount="{{ trigger.amount }}"), WAIT))
    login(client, rita)
    response = client.get(reverse("flows:detail", args=[flow.slug]))
    assert response.status_code == 200
    page = response.content.decode()
    config = embedded(page, "flow-diagram-config")
    assert [n["id"] for n in config["graph"]["nodes"]] == ["start", "shape", "wait"]
    assert {(e["from"], e["to"]) for e in config["graph"]["edges"]} == {
        ("start", "shape"), ("shape", "wait")
    }  # fmt: skip
    # The connectors' labels and ports come along, for the node view.
    assert {c["key"] for c in config["connectors"]} == {"trigger.manual", "transform", "delay"}
    assert "Version 1, as published; read-only." in page
    assert 'data-diagram-config="flow-diagram-config"' in page
    assert re.search(r'<script type="module" src="/static/editor/assets/diagram-[^"]+\.js">', page)


def test_a_reviewer_may_view_but_never_edit_the_flow(client, olga, rita):
    flow = publish(olga, chain(transform("shape", amount="{{ trigger.amount }}")))
    login(client, rita)
    assert client.get(reverse("flows:detail", args=[flow.slug])).status_code == 200
    assert client.get(reverse("flows:editor", args=[flow.slug])).status_code == 200
    assert client.get(reverse("flows:graph", args=[flow.slug])).status_code == 403
    assert client.get(reverse("flows:edit", args=[flow.slug])).status_code == 403
    saved = client.put(
        reverse("api:flow_draft_save", args=[flow.slug]),
        {"graph": flow.draft_graph, "base_revision": 1},
        content_type="application/json",
    )
    assert saved.status_code == 403
    page = client.get(reverse("flows:detail", args=[flow.slug])).content.decode()
    assert "Open the editor (read-only)" in page and "Open the editor</a> to change it" not in page


def test_an_unpublished_flow_says_so_and_shows_its_draft_only_to_editors(
    client, olga, rita, make_flow
):
    flow = make_flow(olga, owner=olga)
    services.flow_save_draft(flow=flow, actor=olga, graph=chain(transform("shape", a="1")))
    login(client, rita)
    page = client.get(reverse("flows:detail", args=[flow.slug])).content.decode()
    assert "No version of this flow is published yet, so there is no diagram to show." in page
    assert embedded(page, "flow-diagram-config") is None
    assert "/static/editor/assets/diagram-" not in page  # no bundle without a diagram
    login(client, olga)
    page = client.get(reverse("flows:detail", args=[flow.slug])).content.decode()
    assert "This is its draft, as saved, which only those who may edit the flow see." in page
    assert [n["id"] for n in embedded(page, "flow-diagram-config")["graph"]["nodes"]] == [
        "start", "shape"
    ]  # fmt: skip


def test_a_flow_running_elsewhere_has_no_diagram(client, rita, make_flow, olga):
    flow = make_flow(
        olga, slug="zap", name="Zap", kind="external", external_platform="Zapier",
        external_url="https://zapier.example/zap/1",
    )  # fmt: skip
    login(client, rita)
    page = client.get(reverse("flows:detail", args=[flow.slug])).content.decode()
    assert 'id="diagram"' not in page and "flow-diagram-config" not in page


def test_a_malformed_draft_is_drawn_without_its_broken_parts():
    graph = {
        "nodes": [
            {"id": "start", "type": "trigger.manual", "position": {"x": 1, "y": "two"}},
            {"id": "typeless"},
            "not a node",
            {"id": "shape", "type": "transform", "config": "oops"},
        ],
        "edges": [{"from": "start", "to": "shape"}, {"from": "start", "to": "typeless"}, 7],
        "notes": [{"id": "note-1", "text": "hi", "position": {"x": 0, "y": 0}}, {"id": "n"}],
    }
    shown = drawable(graph)
    assert shown["nodes"] == [
        {"id": "start", "type": "trigger.manual", "config": {}},
        {"id": "shape", "type": "transform", "config": {}},
    ]
    assert shown["edges"] == [{"from": "start", "to": "shape", "from_port": "out"}]
    assert [n["id"] for n in shown["notes"]] == ["note-1"]
    assert drawable({"nodes": "many"}) == {"nodes": [], "edges": [], "notes": []}


def _waiting_run(olga):
    flow = publish(olga, chain(transform("shape", amount="{{ trigger.amount }}"), WAIT))
    run = driver.start_run(flow=flow, input={"amount": 5}, actor="user:olga")
    # A newer version must not change what the run's diagram draws.
    publish(olga, chain(transform("renamed", amount="1")), slug=flow.slug)
    return run


def test_the_run_page_draws_the_pinned_graph_once_and_paints_from_each_update(
    client, olga, rita, eager_celery
):
    with eager_celery():
        run = _waiting_run(olga)
    login(client, rita)
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    config = embedded(page, "run-diagram-config")
    assert [n["id"] for n in config["graph"]["nodes"]] == ["start", "shape", "wait"]
    assert config["states"] == "run-diagram-states"
    rows = {r["node"]: r["status"] for r in states(page)["steps"]}
    assert rows == {"start": "succeeded", "shape": "succeeded", "wait": "waiting"}
    assert 'id="run-diagram" hx-preserve="true"' in page
    assert 'id="step-shape" data-step-node="shape"' in page
    # The poll's fragment brings the rows again, not the graph.
    fragment = client.get(
        reverse("runs:detail", args=[run.pk]), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="run-live"
    ).content.decode()
    assert embedded(fragment, "run-diagram-config") is None
    assert states(fragment)["steps"][2]["status"] == "waiting"
    # htmx drops every <script> it swaps in: the rows must not travel in one.
    assert "<script" not in fragment
    assert 'id="run-diagram" hx-preserve="true"' in fragment


def test_the_run_diagram_api_paints_each_node(client, olga, rita, eager_celery):
    with eager_celery():
        run = _waiting_run(olga)
    login(client, rita)
    response = client.get(reverse("api:run_diagram", args=[run.pk]))
    assert response.status_code == 200
    body = response.json()
    assert body["run_id"] == run.pk and body["version_number"] == 1 and body["live"] is True
    assert [n["id"] for n in body["graph"]["nodes"]] == ["start", "shape", "wait"]
    assert body["nodes"] == {
        "start": {"status": "succeeded", "detail": ""},
        "shape": {"status": "succeeded", "detail": ""},
        "wait": {"status": "waiting", "detail": ""},
    }
    assert [r["node"] for r in body["steps"]] == ["start", "shape", "wait"]


def test_the_run_diagram_api_is_refused_as_the_run_page_is(client, olga, nora, eager_celery):
    with eager_celery():
        run = _waiting_run(olga)
    url = reverse("api:run_diagram", args=[run.pk])
    assert client.get(url).status_code == 401
    login(client, nora)
    assert client.get(reverse("runs:detail", args=[run.pk])).status_code == 403
    refused = client.get(url)
    assert refused.status_code == 403 and "runs.view_run" in refused.json()["error"]["message"]
    login(client, olga)
    assert client.get(reverse("api:run_diagram", args=[run.pk + 1000])).status_code == 404


def test_a_stuck_compensation_paints_its_node_dead_lettered(client, olga, payments, eager_celery):
    flow = publish(olga, saga_graph(payments.url, on_failure="dead_letter"), slug="orders")
    control(payments, inventory_fail_next=1, inventory_fail_status=409)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "D-1", "amount": 9, "sku": "B"},
                               actor="user:olga")  # fmt: skip
    control(payments, fail_next=50, fail_status=400)  # the refund is refused
    with eager_celery():
        driver.discard_dead_letter(run.pk, "reserve", actor="user:olga", reason="out of stock")
    login(client, olga)
    body = client.get(reverse("api:run_diagram", args=[run.pk])).json()
    rows = {r["node"]: r["status"] for r in body["steps"]}
    assert rows["charge~undo"] == "dead_lettered" and rows["charge"] == "compensating"
    assert body["nodes"]["charge"] == {"status": "dead_lettered", "detail": "undo dead lettered"}
    assert body["nodes"]["reserve"]["status"] == "failed"
    assert "charge~undo" not in body["nodes"]


@pytest.mark.parametrize("case", json.loads(CASES.read_text()), ids=lambda c: c["name"])
def test_the_server_paints_as_the_browser_does(case):
    assert node_states(case["rows"]) == case["nodes"]


def test_a_test_runs_page_draws_the_draft_snapshot_it_ran(client, olga, eager_celery):
    """A test run has no numbered version: its diagram is its pinned draft."""
    from flows import testruns

    flow = services.flow_create(actor=olga, data={"name": "Draft only", "slug": "draft-only"})
    graph = chain(transform("shape", n="{{ trigger.n }}"))
    services.flow_save_draft(flow=flow, actor=olga, graph=graph)
    flow.refresh_from_db()
    with eager_celery():
        run = testruns.test_run_start(flow=flow, actor="user:olga", input={"n": 2})
    login(client, olga)
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    config = embedded(page, "run-diagram-config")
    assert [n["id"] for n in config["graph"]["nodes"]] == ["start", "shape"]
    assert {r["node"]: r["status"] for r in states(page)["steps"]}["shape"] == "succeeded"
    answer = client.get(reverse("api:run_diagram", args=[run.pk]))
    assert answer.status_code == 200
