"""A refund approval as people meet it, in real Chromium: the operator
starts the demo approval flow, the reviewer's open inbox shows the task
without a reload, the reviewer approves with a comment, the run completes."""

import json

import pytest
from playwright.sync_api import expect

from flows.management.commands.seed_demo import seed_approvals
from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reviewer_approves_a_live_refund(browser, live_server, olga, rita, adam, settings):  # noqa: F811
    # The test server speaks HTTP only (no websockets): the inbox polls, as on
    # the embedded default. The websocket mode is tested in test_approval_pages.
    settings.LEDGERFLOW_LIVE_UPDATES = "polling"
    settings.LEDGERFLOW_INBOX_POLL_SECONDS = 1
    seed_approvals(actor=adam, owner=olga)

    reviewer = log_in(browser, live_server, "rita", PASSWORD)
    reviewer.goto(f"{live_server.url}/approvals/?tab=groups")
    expect(reviewer.locator("#inbox-list")).to_contain_text("Nothing waits for you.")
    expect(reviewer.locator("#inbox-badge")).to_have_text("0")

    operator = log_in(browser, live_server, "olga", PASSWORD)
    operator.goto(f"{live_server.url}/flows/refund-approvals/")
    order = {"order_id": "A-7", "amount": 640, "reason": "arrived broken"}
    operator.fill("textarea[name=input]", json.dumps(order))
    operator.click("button:has-text('Start run')")
    expect(operator.locator("h1 .pill")).to_have_text("waiting")
    screenshot(operator, "approval-run-waiting")

    row = reviewer.locator("#inbox-list tr.task-row", has_text="Refund 640 EUR for order A-7")
    expect(row).to_be_visible(timeout=10_000)
    expect(reviewer.locator("#inbox-badge")).to_have_text("1", timeout=10_000)
    screenshot(reviewer, "approval-inbox-live")

    row.locator("a").first.click()
    expect(reviewer.locator("h1")).to_contain_text("Refund 640 EUR for order A-7")
    expect(reviewer.locator(".facts")).to_contain_text("Refund approvals")
    reviewer.select_option("#field_refund_kind", "card")
    reviewer.fill("#id_comment", "Photos confirm the damage; refund to card.")
    screenshot(reviewer, "approval-task-form")
    reviewer.click("button:has-text('Approve')")
    expect(reviewer.locator(".message-success")).to_contain_text("You approved")
    expect(reviewer.locator("#inbox-badge")).to_have_text("0")
    reviewer.click("text=Decided")
    decided = reviewer.locator("#inbox-list tr.task-row", has_text="Refund 640 EUR")
    expect(decided).to_contain_text("approved")
    expect(decided).to_contain_text("rita")
    screenshot(reviewer, "approval-decided")

    operator.reload()
    expect(operator.locator("h1 .pill")).to_have_text("succeeded")
    expect(operator.locator("#run-body")).to_contain_text('"approved_by": "rita"')
    screenshot(operator, "approval-run-completed")


def test_admin_sees_the_queues_and_sets_business_hours(browser, live_server, olga, adam):  # noqa: F811
    from runs import driver

    flow = seed_approvals(actor=adam, owner=olga)
    for order in ("A-1", "A-2"):
        driver.start_run(flow=flow, input={"order_id": order, "amount": 700}, actor="user:olga")
    page = log_in(browser, live_server, "adam", PASSWORD)
    page.goto(f"{live_server.url}/approvals/queues/")
    row = page.locator("tr", has_text="Reviewer")
    expect(row.locator("td").nth(1)).to_have_text("2")
    screenshot(page, "approval-queues")

    page.click("text=Business hours")
    page.select_option("#id_group", label="Finance leads")
    page.fill("#id_time_zone", "Europe/Lisbon")
    page.fill("#id_opening_hours", "mon 08:00-16:00\ntue 08:00-16:00")
    page.click("button:has-text('Save')")
    expect(page.locator(".message-success")).to_contain_text("Business hours of Finance leads")
    expect(page.locator("tr", has_text="Finance leads")).to_contain_text("Europe/Lisbon")
    screenshot(page, "approval-business-hours")
