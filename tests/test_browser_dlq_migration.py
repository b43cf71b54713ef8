"""Replay on the newest version in real Chromium: runs whose charge the
payments API refused wait in the inbox under one group; the operator
publishes the fixed flow and the API is fixed; the group's preview names the
newest version and the idempotency keys; the operator replays the group
there, and in another tab the run's page, live, draws the new version and
turns green as the run moves on, over several updates."""

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from runs import driver
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Timer
from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD
from tests.engine_helpers import chain, transform
from tests.payments_helpers import charge_node, control, refused_charges, report
from tests.test_browser_editor import eager_tasks  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

POLLS = 6.5  # the page polls every 2 s: three polls and more
SETTLE = {"id": "settle", "type": "delay", "config": {"seconds": 600}}


def diagram_node(page, node: str):
    return page.locator(f'[data-testid="run-diagram"] [data-testid="node-{node}"]')


def fixed_graph(payments) -> dict:
    """Version 2: the charge names its currency, then the payment settles
    (a delay) and a receipt is written."""
    charge = charge_node(payments, retry={"max_attempts": 1})
    charge["config"]["json_body"]["currency"] = "EUR"
    return chain(charge, SETTLE, transform("receipt", charge="{{ steps.charge.output.body.id }}"))


def publish_through_the_api(page, live_server, slug: str, graph: dict) -> int:
    """What the editor does when the operator publishes: save the draft on
    the revision it loaded, then publish it, with the person's session."""
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": token, "Referer": live_server.url}
    api = f"{live_server.url}/api/v1/flows/{slug}"
    draft = page.request.get(f"{api}/draft").json()
    saved = page.request.put(f"{api}/draft", headers=headers,
                             data={"graph": graph, "base_revision": draft["revision"]})  # fmt: skip
    assert saved.ok, saved.text()
    published = page.request.post(f"{api}/publish", headers=headers,
                                  data={"note": "The charge names its currency."})  # fmt: skip
    assert published.ok, published.text()
    return published.json()["number"]


@pytest.fixture(autouse=True)
def polling(settings):
    """Django's live server speaks no websocket: the run page polls, as on
    the embedded default (tests/test_browser_run_live.py watches the socket)."""
    settings.LEDGERFLOW_LIVE_UPDATES = "polling"


def test_a_group_replayed_on_the_newest_version_turns_its_runs_green_live(
    browser,  # noqa: F811
    live_server,
    olga,
    payments,
    eager_tasks,  # noqa: F811
):
    flow, runs, keys = refused_charges(olga, payments, "N")
    page = log_in(browser, live_server, "olga", PASSWORD)
    confirmations: list[str] = []

    def confirm(dialog) -> None:
        confirmations.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)

    # (a) The failing runs wait in the inbox, under one group.
    page.goto(f"{live_server.url}/runs/dead-letters/")
    group = page.get_by_test_id("dead-letter-group")
    expect(group).to_have_count(1)
    expect(group.get_by_test_id("group-count")).to_have_text("2")
    expect(group).to_contain_text("answered 400")
    expect(group.get_by_role("link", name=re.compile("on the newest version"))).to_have_count(0)
    screenshot(page, "dlq-migrate-1-inbox")

    # The first run's page stays open in another tab, live, painted red.
    watcher = page.context.new_page()
    watcher.goto(f"{live_server.url}/runs/{runs[0].pk}/")
    expect(diagram_node(watcher, "charge")).to_have_attribute("data-status", "dead_lettered")
    expect(watcher.locator("#run-live")).to_contain_text("Version 1")

    # (b) The operator publishes the fixed flow; the API is fixed too.
    assert publish_through_the_api(page, live_server, "charges", fixed_graph(payments)) == 2
    control(payments, fail_next=0)

    # The dead letter's page explains the move before anything is done.
    page.goto(f"{live_server.url}/runs/dead-letters/{runs[0].pk}/charge/")
    plan = page.get_by_test_id("newest-plan")
    expect(plan).to_contain_text("Nodes checked: start, charge")
    expect(plan).to_contain_text("New: settle, receipt")
    expect(plan).to_contain_text(keys[0])
    screenshot(page, "dlq-migrate-2-detail")

    # (c) The group's preview on the newest version: version, runs, keys.
    page.goto(f"{live_server.url}/runs/dead-letters/")
    group.get_by_role("link", name="… on the newest version (2)").click()
    summary = page.get_by_test_id("preview-summary")
    expect(summary).to_contain_text("2 runs move to the newest version")
    expect(summary).to_contain_text("charges version 2 (2 runs)")
    calls = page.get_by_test_id("preview-calls")
    for key in keys:
        expect(calls).to_contain_text(key)
    expect(calls).to_contain_text("1 → 2")
    expect(page.get_by_test_id("preview-refused")).to_have_count(0)
    screenshot(page, "dlq-migrate-3-preview")

    # (d) Replayed on the newest version, confirmed with what it will do.
    page.get_by_role("button", name="Replay 2 dead letters on the newest version").click()
    expect(page.locator(".messages")).to_contain_text("Moved 2 runs to the newest version")
    assert "charges version 2" in confirmations[-1], confirmations
    assert "calling 2 side-effecting steps again with their keys" in confirmations[-1]
    expect(page.get_by_test_id("dead-letter-badge")).to_have_text("0")
    screenshot(page, "dlq-migrate-4-replayed")

    # The open run page notices the move at its next poll and draws the new
    # version: the charge green, the payment settling, the receipt to come.
    expect(watcher.locator("#run-live")).to_contain_text("Version 2", timeout=10_000)
    expect(diagram_node(watcher, "charge")).to_have_attribute("data-status", "succeeded")
    expect(diagram_node(watcher, "settle")).to_have_attribute("data-status", "waiting")
    expect(diagram_node(watcher, "receipt")).to_have_attribute("data-status", "pending")
    polls = []
    watcher.on(
        "response", lambda r: polls.append(r) if r.request.headers.get("hx-request") else None
    )
    watcher.wait_for_timeout(POLLS * 1000)  # not time.sleep: the page keeps polling
    assert len(polls) >= 3, f"only {len(polls)} polls in {POLLS} s"
    expect(watcher.locator("h1 .pill")).to_have_text("waiting")
    expect(diagram_node(watcher, "settle")).to_have_attribute("data-status", "waiting")
    expect(diagram_node(watcher, "charge")).to_have_class(re.compile(r"\blf-status-succeeded\b"))
    screenshot(watcher, "dlq-migrate-5-run-settling")

    # The payment settles (the sweep fires the delay): the run turns green.
    for run in runs:
        timer = Timer.objects.get(run=run, node_id="settle")
        with clock.frozen_at(timer.due_at + dt.timedelta(seconds=1)):
            assert driver.fire_timer(run.pk, "settle", timer.attempt, timer.kind)
    expect(watcher.locator("h1 .pill")).to_have_text("succeeded", timeout=10_000)
    for node in ("start", "charge", "settle", "receipt"):
        expect(diagram_node(watcher, node)).to_have_attribute("data-status", "succeeded")
        expect(diagram_node(watcher, node)).to_have_class(re.compile(r"\blf-status-succeeded\b"))
    expect(watcher.locator("#run-live")).not_to_have_attribute("hx-get", re.compile(".*"))
    expect(watcher.locator(".timeline")).to_contain_text("run.migrated version 1 → 2 by olga")
    screenshot(watcher, "dlq-migrate-6-run-green")
    watcher.close()

    # Each move is on its run's stream, by the person, before the replay.
    for run in runs:
        types = list(Event.objects.filter(stream=run.stream).order_by("seq")
                     .values_list("type", "actor"))  # fmt: skip
        moved = types.index(("run.migrated", "user:olga"))
        assert types[moved + 1] == ("step.replayed", "user:olga")
    orders = report(payments)["orders"]
    assert [orders[f"N-{n}"] for n in range(2)] == [
        {"keys": [keys[n]], "charges": 1, "refunds": 0} for n in range(2)]  # fmt: skip
