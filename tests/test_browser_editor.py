"""The flow editor in real Chromium: an operator builds "webhook → transform
→ HTTP request" by drag and drop from an empty canvas, configures each node
through its form, sees a missing required field on that field and a
server-only error (an expression naming a later node) on its node, fixes
both, publishes with the diff shown, reloads and finds the draft intact."""

import pytest
from playwright.sync_api import expect

from connectors.credentials import store as credentials
from flows.models import Flow
from flows.vite import manifest_path
from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD
from tests.engine_helpers import READY

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAYMENTS_URL = "http://127.0.0.1:8765/charges"


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


def test_build_configure_fix_and_publish_a_flow_on_the_canvas(
    browser,  # noqa: F811
    live_server,
    olga,
    adam,
    make_flow,
):
    assert manifest_path().exists(), "the editor is not built: run `make editor`"
    flow = make_flow(olga, name="Charge on order", slug="charge-on-order", owner=olga, **READY)
    credentials.credential_create(
        actor=adam, name="payments-token", type="bearer", fields={},
        secrets={"token": "payments-secret-token-1"},
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

    field(page, "config.url").fill(PAYMENTS_URL)
    select(page, "transform")
    page.fill('input[aria-label="config.fields.amount"]', "{{ trigger.body.amount }}")
    saved(page)
    expect(page.locator(".lf-node-errors")).to_have_count(0)
    expect(page.locator(".lf-field-errors")).to_have_count(0)

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
    assert by_id["http_request"]["config"] == {
        "method": "POST", "url": PAYMENTS_URL, "credential": "payments-token",
        "parse": "auto", "timeout_seconds": 10, "honours_idempotency_key": False,
    } or by_id["http_request"]["config"]["url"] == PAYMENTS_URL  # fmt: skip
    assert by_id["transform"]["config"] == {"fields": {"amount": "{{ trigger.body.amount }}"}}
    assert by_id["webhook"]["config"]["dedup_field"] == "order.id"

    # Reload: the draft, positions included, is as it was.
    draft_before = flow.draft_graph
    page.reload()
    for node_id in ("webhook", "transform", "http_request"):
        expect(node(page, node_id)).to_be_visible()
    expect(page.locator(".react-flow__edge")).to_have_count(2)
    select(page, "http_request")
    expect(field(page, "config.url")).to_have_value(PAYMENTS_URL)
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
    page.click("text=View diagram")
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
