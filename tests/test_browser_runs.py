"""A live run's page in real Chromium stays whole while it polls: the
status badge, the steps and events and the actions on a dead letter are
still there after several polls, and an edit being typed survives them."""

import time

import pytest
from playwright.sync_api import expect

from flows.management.commands.seed_demo import seed_approvals
from runs import driver
from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD
from tests.engine_helpers import chain, publish, transform

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

POLLS = 5.5  # the page polls every 2 s: this spans two polls and more


@pytest.fixture(autouse=True)
def polling(settings):
    """Django's live server speaks no websocket: these pages poll, as on the
    embedded default (tests/test_browser_run_live.py watches the socket)."""
    settings.LEDGERFLOW_LIVE_UPDATES = "polling"


def test_a_run_waiting_on_a_dead_letter_stays_whole(browser, live_server, olga):  # noqa: F811
    flow = publish(olga, chain(transform("a", x="{{ trigger.value.deep }}")), slug="calc")
    run = driver.start_run(flow=flow, input={}, actor="user:olga")
    page = log_in(browser, live_server, "olga", PASSWORD)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator("h1 .pill")).to_have_text("waiting")
    page.locator(".dead-letter-actions summary", has_text="edit input").click()
    page.fill("textarea[name=edited_input]", '{"fields": {"x": "fixed"}}')
    with page.expect_response(lambda r: bool(r.request.headers.get("hx-request"))):
        pass  # at least one poll has been answered and swapped in
    time.sleep(POLLS)
    screenshot(page, "run-dead-letter-after-polls")
    expect(page.locator("h1 .pill")).to_have_text("waiting")
    expect(page.locator("#run-body h2", has_text="Steps")).to_be_visible()
    expect(page.locator("#run-body")).to_contain_text("trigger has no field value (it is empty)")
    expect(page.locator("button", has_text="Cancel run")).to_be_visible()
    expect(page.locator(".dead-letter-actions button", has_text="Replay")).to_be_visible()
    expect(page.locator(".dead-letter-actions button", has_text="Discard")).to_be_visible()
    expect(page.locator("textarea[name=edited_input]")).to_have_value('{"fields": {"x": "fixed"}}')

    # The run finishes elsewhere: the next poll shows it, then polling stops.
    driver.discard_dead_letter(run.pk, "a", actor="user:olga", reason="bad input")
    expect(page.locator("h1 .pill")).to_have_text("failed", timeout=5_000)
    expect(page.locator("button", has_text="Resume from failed step")).to_be_visible()
    expect(page.locator("#run-live")).not_to_have_attribute("hx-get", f"/runs/{run.pk}/")
    screenshot(page, "run-failed-after-poll")


def test_a_run_waiting_on_an_approval_stays_whole(browser, live_server, olga, adam):  # noqa: F811
    flow = seed_approvals(actor=adam, owner=olga)
    order = {"order_id": "A-7", "amount": 640, "reason": "arrived broken"}
    run = driver.start_run(flow=flow, input=order, actor="user:olga")
    page = log_in(browser, live_server, "olga", PASSWORD)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator("h1 .pill")).to_have_text("waiting")
    time.sleep(POLLS)
    screenshot(page, "run-approval-after-polls")
    expect(page.locator("h1 .pill")).to_have_text("waiting")
    expect(page.locator("#run-body h2", has_text="Steps")).to_be_visible()
    expect(page.locator("#run-body h2", has_text="Events")).to_be_visible()
    expect(page.locator("#run-body")).to_contain_text("waiting")
    expect(page.locator("button", has_text="Cancel run")).to_be_visible()
