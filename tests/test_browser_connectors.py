"""The connector catalogue and the API docs, in real Chromium."""

import pytest
from playwright.sync_api import expect

from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reviewer_reads_the_catalogue_and_the_api_docs(browser, live_server, rita):  # noqa: F811
    page = log_in(browser, live_server, "rita", PASSWORD)
    page.click("nav >> text=Connectors")
    expect(page.locator("h1")).to_contain_text("Connectors")
    charge = page.locator("#connector-payments-charge")
    expect(charge).to_contain_text("Charge payment")
    expect(charge).to_contain_text("compensatable")
    expect(charge).to_contain_text("names a credential")
    expect(page.locator("#category-logic")).to_contain_text("Loop over items")
    screenshot(page, "connectors-catalogue")

    # The docs page is served from django-ninja's own static files (no CDN).
    page.goto(f"{live_server.url}/api/v1/docs")
    expect(page.get_by_text("/api/v1/connectors", exact=True).first).to_be_visible()
    screenshot(page, "api-docs")
