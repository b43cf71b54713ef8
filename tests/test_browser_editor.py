"""The flow editor in real Chromium: an operator builds "webhook → transform
→ HTTP request to the payments API" by drag and drop from an empty canvas,
configures each node through its form, sees a missing required field on that
field and a server-only error (an expression naming a later node) on its
node, fixes both, test-runs the draft and reads the HTTP node's output,
publishes with the diff shown, activates the flow, triggers it by webhook and
sees the run's diagram green, reloads and finds the draft intact."""

import json
import re
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from connectors.credentials import store as credentials
from flows.models import Flow
from flows.vite import manifest_path
from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD
from tests.engine_helpers import READY

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The undo reads the output of the node it undoes.
REFUND_URL = "http://127.0.0.1:9/refunds/{{ steps.charge.output.id }}"


def node(page, node_id):
    return page.locator(f'[data-testid="node-{node_id}"]')


def field(page, path):
    return page.locator(f'[id="field-{path}"]')


def field_errors(page, path):
    return page.locator(f'.lf-field[data-path="{path}"] .lf-field-errors')


def drop(page, key, x, y):
    page.drag_and_drop(
        f'[data-testid="palette-{key}"]', '[data-testid="canvas"]', target_position={"x": x, "y": y}
    )


def connect(page, source_handle, target_handle):
    """Drag from one port to another with the mouse, as a person does."""
    start = page.locator(f'[data-testid="{source_handle}"]').bounding_box()
    end = page.locator(f'[data-testid="{target_handle}"]').bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=12)
    page.mouse.up()


def select(page, node_id):
    node(page, node_id).locator(".lf-node-head").click()
    expect(page.locator('[data-testid="node-panel"] header code')).to_have_text(node_id)


def saved(page):
    expect(page.locator('[data-testid="save-state"]')).to_have_text(
        "All changes saved", timeout=15_000
    )


def test_build_test_publish_and_trigger_a_flow_on_the_canvas(
    browser,  # noqa: F811
    live_server,
    olga,
    adam,
    make_flow,
    payments,
    eager_tasks,
):
    from connectors.triggers.models import Binding
    from runs.models import Run

    assert manifest_path().exists(), "the editor is not built: run `make editor`"
    charges_url = f"{payments.url}/charges"
    flow = make_flow(olga, name="Charge on order", slug="charge-on-order", owner=olga, **READY)
    credentials.credential_create(
        actor=adam, name="payments-token", type="bearer", fields={},
        secrets={"token": "payments-secret-token-1"},
        allowed_hosts=[urlsplit(payments.url).netloc],
    )  # fmt: skip
    page = log_in(browser, live_server, "olga", PASSWORD)
    page.set_viewport_size({"width": 1500, "height": 950})
    page.goto(f"{live_server.url}/flows/{flow.slug}/")
    page.click("text=Open editor")
    expect(page.locator('[data-testid="canvas"]')).to_be_visible()
    expect(page.locator(".lf-empty")).to_contain_text("Drag a trigger")
    # The editor's styles come from static files: it injects no style element
    # (htmx adds its indicator style unless configured not to; not ours).
    styles = page.locator("style").all_text_contents()
    assert all("htmx-indicator" in style for style in styles), styles
    # Demo connectors are not offered; searching narrows the palette.
    expect(page.locator('[data-testid="palette-payments.charge"]')).to_have_count(0)
    page.fill('input[aria-label="Search connectors"]', "webhook")
    expect(page.locator('[data-testid="palette-transform"]')).to_have_count(0)
    page.fill('input[aria-label="Search connectors"]', "")
    screenshot(page, "editor-empty")

    drop(page, "trigger.webhook", 80, 200)
    drop(page, "transform", 340, 200)
    drop(page, "http.request", 600, 200)
    for node_id in ("webhook", "transform", "http_request"):
        expect(node(page, node_id)).to_be_visible()
    # A second trigger is refused, with the reason.
    drop(page, "trigger.webhook", 300, 420)
    expect(page.locator('[data-testid="notice"]')).to_contain_text("exactly one trigger")
    expect(page.locator(".lf-node")).to_have_count(3)

    connect(page, "out-webhook-out", "in-transform")
    connect(page, "out-transform-out", "in-http_request")
    expect(page.locator(".react-flow__edge")).to_have_count(2)
    # A connection back to an earlier node would make a cycle: refused.
    connect(page, "out-http_request-out", "in-transform")
    expect(page.locator('[data-testid="notice"]')).to_contain_text(
        "would make a cycle: transform → http_request → transform"
    )
    expect(page.locator(".react-flow__edge")).to_have_count(2)

    # Configure each node through its form.
    select(page, "webhook")
    field(page, "config.dedup_field").fill("order.id")
    select(page, "transform")
    page.fill('input[aria-label="New key for config.fields"]', "amount")
    page.click('.lf-field[data-path="config.fields"] >> text=Add')
    # Reads a node that runs after it: only the server can tell.
    page.fill('input[aria-label="config.fields.amount"]', "{{ steps.http_request.output.id }}")
    select(page, "http_request")
    # The panel lists what its expressions can read: the trigger and earlier outputs.
    expect(page.locator('[data-testid="variables"]')).to_contain_text(
        "{{ steps.transform.output.amount }}"
    )
    field(page, "config.method").select_option("POST")
    field(page, "config.credential").select_option("payments-token")
    expect(field(page, "config.credential")).not_to_contain_text("payments-secret")
    saved(page)

    # The server's errors, on the field and on the node.
    expect(field_errors(page, "config.url")).to_contain_text("Field required")
    expect(page.locator('[data-testid="node-errors-transform"]')).to_contain_text(
        "steps.http_request"
    )
    screenshot(page, "editor-errors")

    field(page, "config.url").fill(charges_url)
    amount = "{{ steps.transform.output.amount }}"
    body = {"order_id": "{{ trigger.body.order.id }}", "amount": amount}
    field(page, "config.json_body").fill(json.dumps(body))
    select(page, "transform")
    page.fill('input[aria-label="config.fields.amount"]', "{{ trigger.body.amount }}")
    saved(page)
    expect(page.locator(".lf-node-errors")).to_have_count(0)
    expect(page.locator(".lf-field-errors")).to_have_count(0)

    # Test-run the draft through the engine: it charges for real, so the
    # editor asks first; each node turns green and the charge's answer shows.
    page.click('[data-testid="test-run"]')
    page.fill("#test-run-input", '{"body": {"order": {"id": "T-1"}, "amount": 12}}')
    page.click('[data-testid="test-run-start"]')
    expect(page.locator('[data-testid="side-effect-nodes"]')).to_contain_text("http_request")
    page.click('[data-testid="side-effects-confirm"]')
    for node_id in ("webhook", "transform", "http_request"):
        expect(node(page, node_id)).to_have_attribute("data-status", "succeeded", timeout=20_000)
    select(page, "http_request")
    expect(page.locator('[data-testid="test-output"]')).to_contain_text('"order_id": "T-1"')
    # The banner follows the run to its end, not only the nodes.
    status = page.locator('[data-testid="test-run-status"]')
    expect(status).to_have_attribute("data-settled", "true", timeout=20_000)
    expect(status).to_have_attribute("data-status", "succeeded")
    screenshot(page, "editor-journey-test-run")
    assert payments.state.report()["charges"] == 1

    page.click('[data-testid="publish"]')
    diff = page.locator('[data-testid="publish-diff"]')
    expect(diff).to_contain_text("added http_request")
    expect(diff).to_contain_text("new connection transform:out->http_request")
    screenshot(page, "editor-publish-diff")
    page.fill("#publish-note", "first version, built on the canvas")
    page.click('[data-testid="publish-confirm"]')
    expect(page.locator('[data-testid="message"]')).to_have_text("Published version 1.")

    flow = Flow.objects.get(pk=flow.pk)
    assert flow.published_version == 1
    version = flow.versions.get(number=1)
    by_id = {n["id"]: n for n in version.graph["nodes"]}
    assert by_id["http_request"]["config"]["url"] == charges_url
    assert by_id["http_request"]["config"]["credential"] == "payments-token"
    assert by_id["transform"]["config"] == {"fields": {"amount": "{{ trigger.body.amount }}"}}
    assert by_id["webhook"]["config"]["dedup_field"] == "order.id"

    # Activate it on its flow page, trigger it by webhook, and watch the run's
    # diagram: every node green.
    page.goto(f"{live_server.url}/flows/{flow.slug}/")
    page.click("form[action$='/activate/'] button")
    expect(page.locator(".pill.status-active")).to_be_visible()
    token = Binding.objects.get(flow=flow).token
    answer = httpx.post(
        f"{live_server.url}/hooks/{token}/", json={"order": {"id": "W-1"}, "amount": 30}
    )
    assert answer.status_code in (200, 202), answer.text
    run = Run.objects.get(flow=flow, is_test=False)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    diagram = page.locator('[data-testid="run-diagram"]')
    for node_id in ("webhook", "transform", "http_request"):
        expect(diagram.locator(f'[data-testid="node-{node_id}"]')).to_have_attribute(
            "data-status", "succeeded", timeout=20_000
        )
    screenshot(page, "editor-journey-run-diagram")
    assert payments.state.report()["charges"] == 2
    page.goto(f"{live_server.url}/flows/{flow.slug}/editor/")

    # Reload: the draft, positions included, is as it was.
    draft_before = flow.draft_graph
    page.reload()
    for node_id in ("webhook", "transform", "http_request"):
        expect(node(page, node_id)).to_be_visible()
    expect(page.locator(".react-flow__edge")).to_have_count(2)
    select(page, "http_request")
    expect(field(page, "config.url")).to_have_value(charges_url)
    saved(page)
    assert Flow.objects.get(pk=flow.pk).draft_graph == draft_before
    # Where each node was dropped is kept in the graph.
    positions = {(n["position"]["x"], n["position"]["y"]) for n in draft_before["nodes"]}
    assert len(positions) == 3 and (0, 0) not in positions
    screenshot(page, "editor-reloaded")

    # Delete a node, then view version 1 read-only and restore it.
    page.click("text=Delete node")
    saved(page)
    page.select_option('select[aria-label="View a published version"]', "1")
    view = page.locator('[data-testid="version-view"]')
    expect(view.locator('[data-testid="node-http_request"]')).to_be_visible()
    screenshot(page, "editor-version")
    page.click('[data-testid="restore-version"]')
    expect(node(page, "http_request")).to_be_visible()
    saved(page)
    restored = Flow.objects.get(pk=flow.pk).draft_graph
    assert [n["id"] for n in restored["nodes"]] == ["webhook", "transform", "http_request"]
    assert len(restored["edges"]) == 2

    # Export gives the management command's file; importing it loads its graph.
    with page.expect_download() as download:
        page.click("a:has-text('Export')")
    path = download.value.path()
    page.set_input_files('input[aria-label="Import a flow file into the draft"]', path)
    expect(page.locator('[data-testid="message"]')).to_contain_text("Imported the graph")
    expect(page.locator(".lf-node")).to_have_count(3)


def test_a_stale_save_offers_reload_and_reviewers_see_the_canvas_read_only(
    browser,  # noqa: F811
    live_server,
    olga,
    adam,
    rita,
    make_flow,
):
    from flows import services

    flow = make_flow(olga, name="Stale", slug="stale", owner=olga, **READY)
    graph = {
        "nodes": [
            {"id": "hook", "type": "trigger.webhook", "position": {"x": 0, "y": 0}},
            {"id": "shape", "type": "transform", "config": {"fields": {"a": "1"}},
             "position": {"x": 300, "y": 0}},
        ],
        "edges": [{"from": "hook", "to": "shape"}],
    }  # fmt: skip
    flow = services.flow_save_draft(flow=flow, actor=olga, graph=graph)
    page = log_in(browser, live_server, "olga", PASSWORD)
    page.set_viewport_size({"width": 1500, "height": 950})
    page.goto(f"{live_server.url}/flows/{flow.slug}/editor/")
    expect(node(page, "shape")).to_be_visible()

    # Adam saves while Olga edits; her next save is refused and names him.
    theirs = {**graph, "nodes": [*graph["nodes"], {"id": "later", "type": "delay",
              "config": {"seconds": 5}, "position": {"x": 600, "y": 0}}]}  # fmt: skip
    base = services.draft_revision(flow).number
    services.flow_save_draft(flow=flow, actor=adam, graph=theirs, base_revision=base)
    select(page, "shape")
    page.keyboard.press("Delete")
    expect(node(page, "shape")).to_have_count(0)
    expect(page.locator('[data-testid="stale"]')).to_contain_text("adam saved this draft")
    screenshot(page, "editor-stale")
    assert Flow.objects.get(pk=flow.pk).draft_graph == theirs
    page.click("text=Reload theirs")
    expect(node(page, "later")).to_be_visible()
    expect(node(page, "shape")).to_be_visible()
    # On top of the reloaded revision, the delete saves.
    select(page, "shape")
    page.click("text=Delete node")
    saved(page)
    ids = [n["id"] for n in Flow.objects.get(pk=flow.pk).draft_graph["nodes"]]
    assert ids == ["hook", "later"]

    # Rename, undo it, redo it; tidy up lays the two unconnected nodes out
    # in one column.
    select(page, "later")
    field(page, "id").fill("pause")
    page.click("text=Rename")
    expect(node(page, "pause")).to_be_visible()
    expect(node(page, "later")).to_have_count(0)
    page.click("button:has-text('Undo')")
    expect(node(page, "later")).to_be_visible()
    page.click("button:has-text('Redo')")
    expect(node(page, "pause")).to_be_visible()
    page.click("text=Tidy up")
    page.click("button:has-text('Note')")
    page.fill('textarea[aria-label="Sticky note note-1"]', "Waits for the ledger to settle.")
    saved(page)
    draft = Flow.objects.get(pk=flow.pk).draft_graph
    assert [(n["id"], n["text"]) for n in draft["notes"]] == [
        ("note-1", "Waits for the ledger to settle.")
    ]
    nodes = draft["nodes"]
    assert [n["id"] for n in nodes] == ["hook", "pause"]
    assert {(n["position"]["x"], n["position"]["y"]) for n in nodes} == {(40, 40), (40, 180)}
    page.context.close()

    page = log_in(browser, live_server, "rita", PASSWORD)
    page.goto(f"{live_server.url}/flows/{flow.slug}/")
    page.click("text=Open the editor (read-only)")
    expect(page.locator('[data-testid="save-state"]')).to_contain_text("Read-only")
    expect(node(page, "pause")).to_be_visible()
    expect(page.locator(".lf-palette")).to_have_count(0)
    expect(page.locator('[data-testid="publish"]')).to_have_count(0)
    select(page, "pause")
    expect(field(page, "config.seconds")).to_be_disabled()
    expect(page.locator('textarea[aria-label="Sticky note note-1"]')).to_have_attribute(
        "readonly", ""
    )
    screenshot(page, "editor-read-only")


def test_the_panel_disables_a_node_previews_expressions_and_sets_a_compensation(
    browser,  # noqa: F811
    live_server,
    olga,
    make_flow,
):
    """D disables the selected node (dashed, kept after a reload); an
    expression previews with the last run's sample values, and a typo reads
    as a sentence; another connector is chosen as a node's compensation and
    configured with its own form."""
    from flows import services
    from runs import driver
    from tests.engine_helpers import publish

    assert manifest_path().exists(), "the editor is not built: run `make editor`"
    make_flow(olga, name="Refundable", slug="refundable", owner=olga, **READY)
    charge = {"id": "charge", "type": "http.request", "position": {"x": 600, "y": 0},
              "config": {"method": "POST", "url": "http://127.0.0.1:9/charges"}}  # fmt: skip
    graph = {
        "nodes": [
            {"id": "hook", "type": "trigger.webhook", "position": {"x": 0, "y": 0}},
            {"id": "shape", "type": "transform", "position": {"x": 300, "y": 0},
             "config": {"fields": {"amount": "{{ trigger.body.amount }}", "note": "gift"}}},
            charge,
        ],
        "edges": [{"from": "hook", "to": "shape"}, {"from": "shape", "to": "charge"}],
    }  # fmt: skip
    # A published version whose charge is disabled runs inline, with no call:
    # its run is the sample the panel shows.
    flow = publish(olga, {**graph, "nodes": [*graph["nodes"][:2], {**charge, "disabled": True}]},
                   slug="refundable")  # fmt: skip
    run = driver.start_run(flow=flow, input={"body": {"email": "ada@example.test", "amount": 21}},
                           actor="user:olga")  # fmt: skip
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    services.flow_save_draft(flow=flow, actor=olga, graph=graph)

    page = log_in(browser, live_server, "olga", PASSWORD)
    page.set_viewport_size({"width": 1500, "height": 950})
    page.goto(f"{live_server.url}/flows/{flow.slug}/editor/")
    expect(node(page, "charge")).to_be_visible()
    expect(page.locator('[data-testid="inventory-facts"]')).to_contain_text("Owner: olga")

    # D disables the selected node; it is drawn dashed and saved so.
    select(page, "charge")
    page.keyboard.press("d")
    expect(node(page, "charge")).to_have_attribute("data-disabled", "true")
    expect(node(page, "charge")).to_have_class(re.compile("lf-node-disabled"))
    expect(field(page, "disabled")).to_be_checked()
    saved(page)
    screenshot(page, "editor-panel-disabled")
    assert Flow.objects.get(pk=flow.pk).draft_graph["nodes"][2]["disabled"] is True
    # A trigger cannot be disabled: the reason is shown, nothing changes.
    select(page, "hook")
    page.keyboard.press("d")
    expect(page.locator('[data-testid="notice"]')).to_contain_text("needs an enabled trigger")
    expect(node(page, "hook")).not_to_have_attribute("data-disabled", "true")
    page.reload()
    expect(node(page, "charge")).to_have_attribute("data-disabled", "true")

    # The variables at a node carry the last run's values.
    select(page, "charge")
    page.locator('[data-testid="variables"] summary').click()
    expect(page.locator('[data-testid="sample-steps.shape.output.amount"]')).to_have_text(" = 21")
    expect(page.locator('[data-testid="variables"]')).to_contain_text(f"run {run.pk}")

    # An expression previews as it is typed; a typo is said in words.
    select(page, "shape")
    amount = page.locator('input[aria-label="config.fields.amount"]')
    amount.fill("{{ trigger.body.amount * 2 }}")
    preview = page.locator('[data-testid="preview-config.fields.amount"]')
    expect(preview).to_have_text("→ 42")
    amount.fill("{{ trigger.body.amuont * 2 }}")
    expect(preview).to_have_text("trigger.body has no field amuont (it has: email, amount)")
    screenshot(page, "editor-panel-preview")
    amount.fill("{{ trigger.body.amount }}")
    expect(preview).to_have_text("→ 21")

    # Compensation by another connector: an HTTP request that refunds.
    select(page, "charge")
    field(page, "compensation").select_option("other")
    field(page, "compensation.type").select_option("http.request")
    expect(page.locator('[data-testid="compensation-form"]')).to_be_visible()
    saved(page)
    # The server's error lands on the compensation's own field.
    expect(field_errors(page, "compensation.config.url")).to_contain_text("Field required")
    field(page, "compensation.config.method").select_option("POST")
    field(page, "compensation.config.url").fill(
        "http://127.0.0.1:9/refunds/{{ steps.charge.output.id }}"
    )
    saved(page)
    expect(page.locator(".lf-field-errors")).to_have_count(0)
    screenshot(page, "editor-panel-compensation")
    spec = Flow.objects.get(pk=flow.pk).draft_graph["nodes"][2]["compensation"]
    assert spec["type"] == "http.request"
    assert (spec["config"]["method"], spec["config"]["url"]) == ("POST", REFUND_URL)
    page.reload()
    select(page, "charge")
    expect(field(page, "compensation")).to_have_value("other")
    expect(field(page, "compensation.config.url")).to_have_value(REFUND_URL)


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the web process once their transaction commits:
    the real driver and connectors, without a separate worker."""
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


def test_test_run_a_draft_paints_each_node_and_shows_the_http_nodes_output(
    browser,  # noqa: F811
    live_server,
    olga,
    make_flow,
    payments,
    eager_tasks,
):
    from flows import services
    from runs.models import Run

    flow = make_flow(olga, name="Try charges", slug="try-charges", owner=olga, **READY)
    charge = {
        "method": "POST",
        "url": f"{payments.url}/charges",
        "json_body": {"order_id": "B-1", "amount": "{{ steps.shape.output.amount }}"},
    }
    graph = {
        "nodes": [
            {"id": "hook", "type": "trigger.webhook", "position": {"x": 0, "y": 0}},
            {"id": "shape", "type": "transform", "position": {"x": 300, "y": 0},
             "config": {"fields": {"amount": "{{ trigger.body.amount }}"}}},
            {"id": "charge", "type": "http.request", "position": {"x": 600, "y": 0},
             "config": charge},
        ],
        "edges": [{"from": "hook", "to": "shape"}, {"from": "shape", "to": "charge"}],
    }  # fmt: skip
    services.flow_save_draft(flow=flow, actor=olga, graph=graph)
    page = log_in(browser, live_server, "olga", PASSWORD)
    page.set_viewport_size({"width": 1500, "height": 950})
    page.goto(f"{live_server.url}/flows/{flow.slug}/editor/")
    expect(node(page, "charge")).to_be_visible()

    page.click('[data-testid="test-run"]')
    dialog = page.locator('[data-testid="test-run-dialog"]')
    expect(dialog.locator('[data-testid="test-webhook-url"]')).to_contain_text("/hooks/test/")
    page.fill("#test-run-input", '{"body": {"amount": 12}}')
    page.click('[data-testid="test-run-start"]')
    # The HTTP node charges for real: the editor asks first, naming it.
    expect(page.locator('[data-testid="side-effect-nodes"]')).to_contain_text(
        "charge (http.request): unsafe"
    )
    screenshot(page, "editor-test-run-confirm")
    page.click('[data-testid="side-effects-confirm"]')
    for node_id in ("hook", "shape", "charge"):
        expect(node(page, node_id)).to_have_attribute("data-status", "succeeded", timeout=20_000)
    expect(page.locator('[data-testid="test-run-status"]')).to_contain_text("succeeded")
    select(page, "charge")
    output = page.locator('[data-testid="test-output"]')
    expect(output).to_contain_text('"status": 201')
    expect(output).to_contain_text('"order_id": "B-1"')
    expect(page.locator('[data-testid="test-input"]')).to_contain_text('"amount": 12')
    screenshot(page, "editor-test-run")
    run = Run.objects.get(flow=flow)
    assert run.is_test and run.status == "succeeded"
    assert payments.state.report()["charges"] == 1

    # Pin the charge's output: the next test run uses it and charges nothing.
    page.click('[data-testid="pin-output"]')
    expect(page.locator('[data-testid="pin-charge"]')).to_be_visible()
    saved(page)
    pinned = Flow.objects.get(pk=flow.pk).draft_graph["pinned"]["charge"]
    assert pinned["status"] == 201
    page.click('[data-testid="test-run"]')
    page.click('[data-testid="test-run-start"]')
    status = page.locator('[data-testid="test-run-status"]')
    expect(status).not_to_contain_text(f"Test run {run.pk}:")
    expect(status).to_have_attribute("data-settled", "true", timeout=20_000)
    for node_id in ("hook", "shape", "charge"):
        expect(node(page, node_id)).to_have_attribute("data-status", "succeeded", timeout=20_000)
    expect(page.locator('[data-testid="test-step"]')).to_contain_text("output from pinned")
    screenshot(page, "editor-test-run-pinned")
    assert Run.objects.filter(flow=flow, is_test=True).count() == 2
    assert payments.state.report()["charges"] == 1
    # The flow page counts no test run among the flow's runs.
    page.goto(f"{live_server.url}/flows/{flow.slug}/")
    expect(page.locator('[data-testid="test-run-count"]')).to_contain_text("2 test runs")
