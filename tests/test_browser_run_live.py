"""A live run's page in real Chromium, watched through many updates.

With Redis: served by the ASGI application under uvicorn (what `make run`
serves), the page listens on the run's websocket and the engine's commits
reach it over the real Redis channel layer; after the last update the
diagram, the timeline and the step details are all there and right, no
frame drew the diagram blank, and the socket, not a poll, asked for every
update. On the embedded default (no channel layer between processes) the
same page polls, and opens no socket."""

import datetime as dt
import re
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect

from approvals import services as approvals
from runs import driver
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Step, Timer
from tests.approval_helpers import approval_node, reviewer, task_of
from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD
from tests.engine_helpers import publish, transform

# Websocket tests share one xdist process and run one after another: the
# channel layer and its Redis database are per process.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("channels"),
]

WAITS = ["w1", "w2", "w3", "w4", "w5"]
NODES = ["start", "shape", "review", *WAITS, "done"]
UPDATE = 10_000  # ms: how long an update may take to show (a generous bound, not a measure)
ORDER = {"order_id": "A-7", "amount": 12, "reason": "arrived late"}

# Counts, on every frame the browser draws, the diagram's nodes and whether
# the element holding the React root is still the one first drawn into.
FRAME_WATCH = """
() => {
  const root = document.querySelector('[data-testid="run-diagram"]');
  const watch = { frames: 0, fewest: Infinity, replaced: 0, liveMissing: 0 };
  window.__diagramWatch = watch;
  const count = () => {
    const now = document.querySelector('[data-testid="run-diagram"]');
    if (now !== root || !root.isConnected) watch.replaced++;
    if (!document.getElementById("run-live")) watch.liveMissing++;
    watch.fewest = Math.min(watch.fewest, root.querySelectorAll(".react-flow__node").length);
    watch.frames++;
    requestAnimationFrame(count);
  };
  requestAnimationFrame(count);
}
"""


# Counts the replies htmx is about to swap in (or, by the guard, not).
SWAP_COUNTER = """
document.addEventListener("htmx:beforeSwap", () => {
  window.__swapAsks = (window.__swapAsks || 0) + 1;
});
"""


def long_flow(olga):
    """trigger -> shape -> review (an approval) -> w1 .. w5 (delays) -> done."""
    nodes = [
        {"id": "start", "type": "trigger.manual"},
        transform("shape", amount="{{ trigger.amount }}"),
        approval_node("review", fields=[]),
        *({"id": w, "type": "delay", "config": {"seconds": 600}} for w in WAITS),
        transform("done", ok="1"),
    ]
    edges = [{"from": a["id"], "to": b["id"]} for a, b in zip(nodes, nodes[1:], strict=False)]
    edges[2]["from_port"] = "approved"
    return publish(olga, {"nodes": nodes, "edges": edges}, slug="long")


def fire(run, node: str) -> None:
    """What the sweep does when a delay is due: fire its timer."""
    timer = Timer.objects.get(run=run, node_id=node)
    with clock.frozen_at(timer.due_at + dt.timedelta(seconds=1)):
        assert driver.fire_timer(run.pk, node, timer.attempt, timer.kind)


def diagram_node(page, node: str):
    return page.locator(f'[data-testid="run-diagram"] [data-testid="node-{node}"]')


def step_pill(page, node: str):
    return page.locator(f"#step-{node} .pill")


def expect_step(page, node: str, status: str) -> None:
    """The diagram's node and the step's row agree on the step's state."""
    expect(diagram_node(page, node)).to_have_attribute("data-status", status, timeout=UPDATE)
    expect(step_pill(page, node)).to_have_text(status, timeout=UPDATE)


def expect_timeline_of(page, run) -> None:
    """The timeline lists every event of the run, in order."""
    seqs = list(
        Event.objects.filter(stream=run.stream).order_by("seq").values_list("seq", flat=True)
    )
    items = page.locator(".timeline li")
    expect(items).to_have_count(len(seqs), timeout=UPDATE)
    assert [int(s) for s in items.evaluate_all("els => els.map(e => e.dataset.seq)")] == seqs


def test_a_long_run_is_followed_over_the_websocket_to_its_end(
    browser,  # noqa: F811
    asgi_server,
    olga,
    settings,
):
    settings.LEDGERFLOW_LIVE_UPDATES = "channels"
    assert "Redis" in settings.CHANNEL_LAYERS["default"]["BACKEND"]
    reviewer("rita")
    run = driver.start_run(flow=long_flow(olga), input=ORDER, actor="user:olga")
    server = SimpleNamespace(url=f"http://{asgi_server}")
    page = log_in(browser, server, "olga", PASSWORD)

    sockets, frames, fetches = [], [], []

    def on_socket(ws):
        sockets.append(ws)
        ws.on("framereceived", lambda payload: frames.append(payload))

    page.on("websocket", on_socket)
    page.on("request", lambda r: fetches.append(r) if r.headers.get("hx-request") else None)
    page.goto(f"{server.url}/runs/{run.pk}/")
    live = page.locator("#run-live")
    # Nothing polls: the socket's address is there instead.
    expect(live).to_have_attribute("data-live-socket", f"/ws/runs/{run.pk}/")
    assert live.get_attribute("hx-trigger") is None and live.get_attribute("hx-get") is None
    expect_step(page, "review", "waiting")
    expect_step(page, "shape", "succeeded")
    page.wait_for_function("() => document.querySelectorAll('.react-flow__node').length === 9")
    page.evaluate(FRAME_WATCH)
    # The socket is open and its catch-up fetch done.
    wait_until(page, lambda: len(fetches) >= 1, "the fetch on opening the socket")
    assert len(sockets) == 1 and sockets[0].url == f"ws://{asgi_server}/ws/runs/{run.pk}/"
    viewport = page.locator('[data-testid="run-diagram"] .react-flow__viewport')
    transform_before = viewport.get_attribute("style")

    # Update after update, each waited for on the page before the next.
    approvals.task_decide(task_id=task_of(run, "review").pk,
                          user=reviewer_named("rita"), decision="approved")  # fmt: skip
    expect_step(page, "review", "succeeded")
    expect_step(page, "w1", "waiting")
    expect_timeline_of(page, run)
    for index, node in enumerate(WAITS):
        fire(run, node)
        expect_step(page, node, "succeeded")
        if index + 1 < len(WAITS):
            expect_step(page, WAITS[index + 1], "waiting")
        expect_timeline_of(page, run)
        if index == 2:
            screenshot(page, f"run-live-socket-{node}")

    # After the last update: everything there, and right.
    run.refresh_from_db()
    assert run.status == "succeeded"
    expect(page.locator("h1 .pill")).to_have_text("succeeded", timeout=UPDATE)
    screenshot(page, "run-live-socket-finished")
    for node in NODES:
        expect_step(page, node, "succeeded")
        expect(diagram_node(page, node)).to_have_class(re.compile(r"\blf-status-succeeded\b"))
    expect_timeline_of(page, run)
    expect(page.locator(".timeline li", has_text="run.succeeded")).to_contain_text("took ")
    # Each delay waited its 600 s: the row and the timeline say so.
    for node in WAITS:
        expect(page.locator(f"#step-{node} .step-took")).to_have_text("took 10 min 1 s")
    assert Step.objects.filter(run=run, status="succeeded").count() == len(NODES)
    expect(page.locator("#step-shape details.step-io").first).to_be_attached()
    page.locator("#step-shape details.step-io summary", has_text="output").click()
    expect(page.locator("#step-shape details.step-io pre").nth(1)).to_contain_text('"amount": 12')

    watch = page.evaluate("window.__diagramWatch")
    assert watch["frames"] > 30, watch  # it was watched through every update
    assert watch["liveMissing"] == 0, f"the live part of the page went missing: {watch}"
    assert watch["replaced"] == 0, f"the diagram's element was replaced: {watch}"
    assert watch["fewest"] == len(NODES), f"the diagram blanked in some frame: {watch}"
    assert viewport.get_attribute("style") == transform_before  # no refit, no reset

    # The socket delivered the updates: one frame per commit at least (one for
    # the decision, one per delay), and every fetch of the fragment followed one.
    changed = [f for f in frames if "run-changed" in str(f)]
    assert len(changed) >= 1 + len(WAITS), frames
    assert 1 + len(WAITS) <= len(fetches) <= len(changed) + 1  # +1: the catch-up on opening
    assert all(f.headers.get("hx-target") == "run-live" for f in fetches)
    # The finished run's fragment carries no socket address: the page closed it.
    expect(live).not_to_have_attribute("data-live-socket", re.compile(".*"))
    wait_until(page, sockets[0].is_closed, "the socket closing")
    assert len(sockets) == 1  # one socket all along: it never dropped and reconnected
    settled = len(fetches)
    page.wait_for_timeout(4_500)  # a poll every 2 s would have asked twice by now
    assert len(fetches) == settled
    assert sockets[0].is_closed()


def wait_until(page, done, what: str, ms: int = UPDATE) -> None:
    """Let the page run (its events arrive meanwhile) until ``done()``."""
    for _ in range(ms // 100):
        if done():
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"waited {ms} ms for {what}")


def reviewer_named(username: str):
    from django.contrib.auth.models import User

    return User.objects.get(username=username)


def test_the_page_stays_whole_when_an_update_brings_the_login_page(
    browser,  # noqa: F811
    asgi_server,
    olga,
    settings,
):
    """The session ends while the page listens: the next update's fetch is
    answered by the login page. The page keeps what it shows."""
    settings.LEDGERFLOW_LIVE_UPDATES = "channels"
    reviewer("rita")
    run = driver.start_run(flow=long_flow(olga), input=ORDER, actor="user:olga")
    server = SimpleNamespace(url=f"http://{asgi_server}")
    page = log_in(browser, server, "olga", PASSWORD)
    answered = []
    page.on("response", lambda r: answered.append(r))
    page.add_init_script(SWAP_COUNTER)
    page.goto(f"{server.url}/runs/{run.pk}/")
    expect_step(page, "review", "waiting")
    page.wait_for_function("() => document.querySelectorAll('.react-flow__node').length === 9")
    page.evaluate(FRAME_WATCH)
    swaps = lambda: page.evaluate("window.__swapAsks || 0")  # noqa: E731
    wait_until(page, lambda: swaps() >= 1, "the fetch on opening the socket")
    page.context.clear_cookies()
    before = swaps()
    approvals.task_decide(task_id=task_of(run, "review").pk,
                          user=reviewer_named("rita"), decision="approved")  # fmt: skip
    wait_until(page, lambda: swaps() > before, "the update's reply")
    assert any("/login/" in r.url for r in answered), [r.url for r in answered]
    screenshot(page, "run-live-session-ended")
    watch = page.evaluate("window.__diagramWatch")
    assert watch["liveMissing"] == 0 and watch["fewest"] == len(NODES), watch
    expect(page.locator("#run-body h2", has_text="Steps")).to_be_visible()
    expect(page.locator("#run-body h2", has_text="Events")).to_be_visible()
    expect(step_pill(page, "review")).to_have_text("waiting")  # what it last knew


@pytest.fixture
def polling(settings):
    settings.LEDGERFLOW_LIVE_UPDATES = "polling"


def test_on_the_embedded_default_the_page_polls_and_opens_no_socket(
    browser,  # noqa: F811
    live_server,
    olga,
    polling,
):
    reviewer("rita")
    run = driver.start_run(flow=long_flow(olga), input=ORDER, actor="user:olga")
    page = log_in(browser, live_server, "olga", PASSWORD)
    sockets, polls = [], []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.on("response", lambda r: polls.append(r) if r.request.headers.get("hx-request") else None)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator("#run-live")).to_have_attribute("hx-trigger", "every 2s")
    expect_step(page, "review", "waiting")
    page.wait_for_function("() => document.querySelectorAll('.react-flow__node').length === 9")
    page.evaluate(FRAME_WATCH)
    approvals.task_decide(task_id=task_of(run, "review").pk,
                          user=reviewer_named("rita"), decision="approved")  # fmt: skip
    expect_step(page, "w1", "waiting")
    for node in WAITS:
        fire(run, node)
        expect_step(page, node, "succeeded")
    expect(page.locator("h1 .pill")).to_have_text("succeeded", timeout=UPDATE)
    for node in NODES:
        expect_step(page, node, "succeeded")
    expect_timeline_of(page, run)
    screenshot(page, "run-live-polling-finished")
    watch = page.evaluate("window.__diagramWatch")
    assert watch["liveMissing"] == 0 and watch["replaced"] == 0, watch
    assert watch["fewest"] == len(NODES), watch
    assert len(polls) >= 3 and not sockets
    # The finished run's fragment carries no poll: it stopped.
    expect(page.locator("#run-live")).not_to_have_attribute("hx-trigger", "every 2s")
