"""Read-only diagrams in real Chromium: a reviewer reads a flow's published
graph on its page; a run's diagram repaints as the run moves, across several
polls, without ever blanking; a click on a node jumps to its step."""

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from runs import driver
from runs.ground import clock
from runs.models import Timer
from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD
from tests.engine_helpers import chain, publish, transform

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WAIT = {"id": "wait", "type": "delay", "config": {"seconds": 600}}
FOCUSED = re.compile(r"\blf-step-focus\b")
POLLS = 6.5  # the page polls every 2 s: three polls and more


@pytest.fixture(autouse=True)
def polling(settings):
    """Django's live server speaks no websocket: these pages poll, as on the
    embedded default (tests/test_browser_run_live.py watches the socket)."""
    settings.LEDGERFLOW_LIVE_UPDATES = "polling"


# Counts, on every frame the browser draws, the diagram's nodes and whether
# the element holding the React root is still the one first drawn into.
FRAME_WATCH = """
() => {
  const root = document.querySelector('[data-testid="run-diagram"]');
  const watch = { frames: 0, fewest: Infinity, replaced: 0 };
  window.__diagramWatch = watch;
  const count = () => {
    const now = document.querySelector('[data-testid="run-diagram"]');
    if (now !== root || !root.isConnected) watch.replaced++;
    watch.fewest = Math.min(watch.fewest, root.querySelectorAll(".react-flow__node").length);
    watch.frames++;
    requestAnimationFrame(count);
  };
  requestAnimationFrame(count);
}
"""


def diagram_node(page, node: str):
    return page.locator(f'[data-testid="run-diagram"] [data-testid="node-{node}"]')


def waiting_run(olga):
    flow = publish(
        olga,
        chain(transform("shape", amount="{{ trigger.amount }}"), WAIT, transform("done", ok="1")),
    )
    run = driver.start_run(flow=flow, input={"amount": 12}, actor="user:olga")
    run.refresh_from_db()
    assert run.status == "waiting"
    return run


def finish_the_wait(run) -> None:
    """What the sweep does when the delay is due: fire its timer."""
    timer = Timer.objects.get(run=run, node_id="wait")
    with clock.frozen_at(timer.due_at + dt.timedelta(seconds=1)):
        assert driver.fire_timer(run.pk, "wait", timer.attempt, timer.kind)


def test_a_reviewer_reads_the_published_diagram_on_the_flow_page(browser, live_server, olga, rita):  # noqa: F811
    flow = publish(olga, chain(transform("shape", amount="{{ trigger.amount }}"), WAIT))
    page = log_in(browser, live_server, "rita", PASSWORD)
    page.goto(f"{live_server.url}/flows/{flow.slug}/")
    diagram = page.locator('[data-testid="flow-diagram"]')
    for node in ("start", "shape", "wait"):
        expect(diagram.locator(f'[data-testid="node-{node}"]')).to_be_visible()
    expect(diagram.locator('[data-testid="node-shape"]')).to_contain_text("Transform")
    expect(diagram.locator(".react-flow__edge")).to_have_count(2)
    expect(diagram.locator(".react-flow__minimap")).to_be_visible()
    expect(diagram.locator(".react-flow__controls")).to_be_visible()
    # Nothing to edit: no palette, no settings panel, nodes stay where they are.
    expect(page.locator(".lf-palette, .lf-panel")).to_have_count(0)
    screenshot(page, "diagram-flow-reviewer")
    shape = diagram.locator('[data-testid="node-shape"]')
    before = shape.bounding_box()
    # A drag on a node never moves it away from the others.
    start_before = diagram.locator('[data-testid="node-start"]').bounding_box()
    page.mouse.move(before["x"] + 20, before["y"] + 10)
    page.mouse.down()
    page.mouse.move(before["x"] + 160, before["y"] + 90, steps=5)
    page.mouse.up()
    after = shape.bounding_box()
    start_after = diagram.locator('[data-testid="node-start"]').bounding_box()
    assert round(after["x"] - start_after["x"]) == round(before["x"] - start_before["x"])
    assert round(after["y"] - start_after["y"]) == round(before["y"] - start_before["y"])
    expect(page.locator("a", has_text="Open the editor (read-only)")).to_be_visible()


def test_a_live_run_repaints_its_diagram_without_blanking(browser, live_server, olga):  # noqa: F811
    run = waiting_run(olga)
    page = log_in(browser, live_server, "olga", PASSWORD)
    polls = []
    page.on("response", lambda r: polls.append(r) if r.request.headers.get("hx-request") else None)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(diagram_node(page, "wait")).to_have_attribute("data-status", "waiting")
    expect(diagram_node(page, "shape")).to_have_attribute("data-status", "succeeded")
    expect(diagram_node(page, "done")).to_have_attribute("data-status", "pending")
    page.evaluate(FRAME_WATCH)
    viewport = page.locator('[data-testid="run-diagram"] .react-flow__viewport')
    transform_before = viewport.get_attribute("style")
    page.wait_for_timeout(POLLS * 1000)  # not time.sleep: events arrive while waiting
    assert len(polls) >= 3, f"only {len(polls)} polls in {POLLS} s"
    expect(diagram_node(page, "wait")).to_have_attribute("data-status", "waiting")
    screenshot(page, "diagram-run-waiting")

    finish_the_wait(run)
    expect(page.locator("h1 .pill")).to_have_text("succeeded", timeout=5_000)
    expect(diagram_node(page, "wait")).to_have_attribute("data-status", "succeeded")
    expect(diagram_node(page, "wait")).to_have_class(re.compile(r"\blf-status-succeeded\b"))
    expect(diagram_node(page, "done")).to_have_attribute("data-status", "succeeded")
    watch = page.evaluate("window.__diagramWatch")
    assert watch["frames"] > 60, watch  # it was watched through every poll
    assert watch["replaced"] == 0, f"the diagram's element was replaced: {watch}"
    assert watch["fewest"] == 4, f"the diagram blanked in some frame: {watch}"
    assert viewport.get_attribute("style") == transform_before  # no refit, no reset
    screenshot(page, "diagram-run-succeeded")


def test_a_click_on_a_node_jumps_to_its_step(browser, live_server, olga):  # noqa: F811
    run = waiting_run(olga)
    page = log_in(browser, live_server, "olga", PASSWORD)
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    row = page.locator("#step-shape")
    expect(row).not_to_be_in_viewport()
    diagram_node(page, "shape").click()
    expect(row).to_be_in_viewport()
    expect(row).to_have_class(FOCUSED)
    expect(row.locator("details.step-io").first).to_have_attribute("open", "")
    assert page.url.endswith(f"/runs/{run.pk}/#step-shape")
    # The next polls replace the row; the mark and the opened input stay.
    with page.expect_response(lambda r: bool(r.request.headers.get("hx-request"))):
        pass
    page.wait_for_timeout(500)
    expect(page.locator("#step-shape")).to_have_class(FOCUSED)
    expect(page.locator("#step-shape details.step-io").first).to_have_attribute("open", "")
    expect(page.locator("#step-wait")).not_to_have_class(FOCUSED)
    screenshot(page, "diagram-run-step-focus")
    # From the keyboard: a focused node and Enter.
    page.evaluate("window.scrollTo(0, 0)")
    expect(page.locator("#step-done")).not_to_be_in_viewport()
    page.locator('[data-testid="run-diagram"] .react-flow__node[data-id="done"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#step-done")).to_be_in_viewport()
    expect(page.locator("#step-done")).to_have_class(FOCUSED)
    expect(page.locator("#step-shape")).not_to_have_class(FOCUSED)
