"""The inventory as a new user meets it, in real Chromium."""

import pytest
from playwright.sync_api import expect

from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_operator_creates_fixes_and_activates_a_flow(browser, live_server, olga):  # noqa: F811
    page = log_in(browser, live_server, "olga", PASSWORD)
    page.click("text=New automation")
    page.fill("#id_review_cadence_days", "0")
    page.click("text=Add to inventory")
    expect(page.locator(".has-error").first).to_contain_text("This field is required.")
    expect(page.locator(".has-error").last).to_contain_text("greater than or equal to 1")
    screenshot(page, "inventory-form-errors")

    page.fill("#id_name", "Refund approvals")
    page.fill("#id_review_cadence_days", "30")
    page.click("text=Add to inventory")
    expect(page.locator("h1")).to_contain_text("Refund approvals")
    expect(page.locator('[data-testid="activation-blockers"]')).to_contain_text(
        "a runbook and a failure mode"
    )
    page.click("button:has-text('Activate')")
    expect(page.locator(".message-error")).to_contain_text(
        "Cannot activate: this flow needs a runbook and a failure mode."
    )
    screenshot(page, "inventory-activation-blocked")

    page.click("text=Edit")
    page.fill("#id_runbook", "## When it fails\n1. Replay the **dead letter**.")
    page.fill("#id_failure_mode", "Refunds wait; customers complain after a week.")
    page.click("text=Save changes")
    page.click("button:has-text('Activate')")
    expect(page.locator("h1 .pill")).to_have_text("Active")
    expect(page.locator(".prose strong")).to_have_text("dead letter")
    expect(page.locator(".timeline")).to_contain_text("activated")
    screenshot(page, "inventory-flow-active")


def test_reviewer_filters_live_and_cannot_edit(browser, live_server, rita, olga, make_flow):  # noqa: F811
    make_flow(olga, name="Order fulfilment", slug="order-fulfilment")
    make_flow(olga, name="Lead routing zap", slug="lead-routing", tags=["sales"])
    page = log_in(browser, live_server, "rita", PASSWORD)
    expect(page.locator("#inventory-results tbody tr")).to_have_count(2)
    expect(page.locator("text=New automation")).to_have_count(0)
    page.fill("input[name=q]", "sales")
    expect(page.locator("#inventory-results tbody tr")).to_have_count(1)
    expect(page.locator("#inventory-results")).to_contain_text("Lead routing zap")
    assert "q=sales" in page.url  # htmx pushed the filter into the address
    screenshot(page, "inventory-filtered")
    response = page.goto(f"{live_server.url}/flows/lead-routing/edit/")
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("Not allowed")


def test_admin_audits_the_inventory(browser, live_server, adam, olga, make_flow):  # noqa: F811
    make_flow(olga, name="Nightly CRM sync", slug="crm-sync")
    page = log_in(browser, live_server, "adam", PASSWORD)
    page.click("nav >> text=Inventory audit")
    row = page.locator("tr", has_text="Nightly CRM sync")
    expect(row).to_contain_text("no owner")
    expect(row).to_contain_text("no runbook")
    with page.expect_download() as download:
        page.click("text=Export CSV")
    assert download.value.suggested_filename == "inventory-audit.csv"
    screenshot(page, "inventory-audit")
