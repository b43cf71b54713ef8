"""The dashboard in real Chromium: the chart is drawn from the bundled uPlot
with the figures embedded by json_script, under the strict CSP."""

import pytest
from playwright.sync_api import expect

from runs import driver
from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD
from tests.test_dashboard import BAD, GOOD, shaped

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_operator_reads_the_runs_chart_overall_and_per_flow(browser, live_server, olga):  # noqa: F811
    orders, refunds = shaped("orders", olga), shaped("refunds", olga)
    # Transforms run inline: each run is finished or dead-lettered on return.
    for payload in (GOOD, GOOD, BAD):
        driver.start_run(flow=orders, input=payload, actor="webhook")
    driver.start_run(flow=refunds, input=GOOD, actor="webhook")
    page = log_in(browser, live_server, "olga", PASSWORD)
    page.click("nav >> text=Dashboard")
    expect(page.locator("#figure-started")).to_have_text("4")
    expect(page.locator("#figure-success-rate")).to_have_text("100%")
    expect(page.locator("#figure-dead-letters")).to_have_text("1")
    expect(page.locator("#runs-chart canvas")).to_have_count(1)
    expect(page.locator("#runs-chart .u-legend")).to_contain_text("Failed")
    screenshot(page, "dashboard")

    page.select_option("select[name=flow]", "refunds")
    page.click("button:has-text('Show')")
    expect(page.locator("h1")).to_have_text("Dashboard: refunds")
    expect(page.locator("#figure-started")).to_have_text("1")
    expect(page.locator("#runs-chart canvas")).to_have_count(1)
