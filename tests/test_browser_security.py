"""The Content-Security-Policy in a real browser: pages load without a
violation, the listener the browser tests rely on does catch one, and the
security headers are sent."""

import pytest

from tests.browser import browser, log_in  # noqa: F401
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_inline_script_is_refused_and_reported(browser, live_server, adam):  # noqa: F811
    page = log_in(browser, live_server, "adam", PASSWORD)
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.body.appendChild(script);
            const div = document.createElement("div");
            div.setAttribute("onclick", "window.injected = true");
            div.setAttribute("style", "color: red");
            document.body.appendChild(div);
            div.click();
        }"""
    )
    browser.settle()
    assert page.evaluate("() => window.injected") is None
    directives = {violation["directive"] for violation in browser.violations}
    assert {"script-src-elem", "script-src-attr", "style-src-attr"} <= directives
    browser.violations.clear()  # seen on purpose; the fixture checks the rest


def test_pages_send_the_security_headers(browser, live_server, adam):  # noqa: F811
    page = log_in(browser, live_server, "adam", PASSWORD)
    response = page.goto(f"{live_server.url}/audit/")
    headers = response.headers
    policy = headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "object-src 'none'",
        "base-uri 'none'",
    ):
        assert directive in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    # htmx still works without eval: the inventory filters live.
    page.goto(f"{live_server.url}/flows/")
    assert page.evaluate("() => htmx.config.allowEval") is False
    assert page.evaluate("() => htmx.config.includeIndicatorStyles") is False


def test_confirmations_work_without_inline_handlers(browser, live_server, olga):  # noqa: F811
    from runs import driver
    from runs.models import Run
    from tests.engine_helpers import chain, publish

    flow = publish(olga, chain({"id": "wait", "type": "delay", "config": {"seconds": 600}}))
    run = driver.start_run(flow=flow, input={}, actor="user:olga")
    page = log_in(browser, live_server, "olga", PASSWORD)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("text=Cancel run")
    page.wait_for_timeout(300)
    assert Run.objects.get(pk=run.pk).status != "cancelled"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Cancel run")
    page.wait_for_load_state()
    page.wait_for_timeout(300)
    assert Run.objects.get(pk=run.pk).status == "cancelled"
