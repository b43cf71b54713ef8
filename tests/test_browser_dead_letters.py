"""The dead-letter inbox in real Chromium: runs whose charge the payments API
refused appear under one group; the operator selects the group, reads the
replay preview (version and idempotency keys), fixes the API, replays, and
sees the runs succeed."""

import pytest
from playwright.sync_api import expect

from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD
from tests.payments_helpers import control, refused_charges, report
from tests.test_browser_editor import eager_tasks  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_refused_group_is_previewed_replayed_and_succeeds(
    browser,  # noqa: F811
    live_server,
    olga,
    payments,
    eager_tasks,  # noqa: F811
):
    flow, runs, keys = refused_charges(olga, payments, "B")
    page = log_in(browser, live_server, "olga", PASSWORD)
    page.on("dialog", lambda dialog: dialog.accept())

    page.goto(f"{live_server.url}/runs/dead-letters/")
    expect(page.get_by_test_id("dead-letter-badge")).to_have_text("2")
    group = page.get_by_test_id("dead-letter-group")
    expect(group).to_have_count(1)
    expect(group.get_by_test_id("group-count")).to_have_text("2")
    expect(group).to_contain_text("answered 400")
    screenshot(page, "dlq-inbox")

    group.get_by_role("link", name="charge").first.click()
    expect(page.get_by_test_id("breaker-state")).to_be_visible()
    expect(page.locator("#runbook")).to_contain_text("Replay the dead letter.")
    expect(page.get_by_test_id("raw-input")).to_contain_text('"amount"')
    screenshot(page, "dlq-detail")
    page.goto(f"{live_server.url}/runs/dead-letters/")

    group.locator("input[data-select-group]").check()
    for run in runs:
        expect(group.locator(f'input[type=checkbox][value="{run.pk}:charge"]')).to_be_checked()
    screenshot(page, "dlq-group-selected")
    group.get_by_role("button", name="Preview replay of selected").click()

    expect(page.get_by_test_id("preview-summary")).to_contain_text("2 runs resume")
    expect(page.get_by_test_id("preview-summary")).to_contain_text("charges version 1 (2 runs)")
    for key in keys:
        expect(page.get_by_test_id("preview-calls")).to_contain_text(key)
    screenshot(page, "dlq-preview")

    control(payments, fail_next=0)  # the API is fixed
    page.get_by_role("button", name="Replay 2 dead letters").click()
    expect(page.locator(".messages")).to_contain_text("Replayed 2 dead letters")
    expect(page.get_by_test_id("dead-letter-badge")).to_have_text("0")
    for run in runs:
        page.goto(f"{live_server.url}/runs/{run.pk}/")
        expect(page.locator("h1 .pill")).to_have_text("succeeded")
    screenshot(page, "dlq-run-succeeded")
    assert sorted(k for order in report(payments)["orders"].values() for k in order["keys"]) \
        == sorted(keys)  # fmt: skip
