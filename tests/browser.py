"""Real Chromium through Playwright. Debian's chromium, never a download."""

import os
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Playwright's sync API runs an event loop in this thread; the test's own ORM
# calls are still synchronous, so Django's async guard does not apply.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


# Reports every Content-Security-Policy violation of a page to the test.
# Playwright's init scripts and bindings are not subject to the page's CSP.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__ledgerflowCspViolation({
    page: location.href,
    directive: event.effectiveDirective,
    blocked: event.blockedURI,
    source: event.sourceFile,
    line: event.lineNumber,
    sample: event.sample,
  });
}, true);
"""


class CheckedBrowser:
    """The Playwright browser, whose every page reports CSP violations into
    ``violations``; the fixture fails the test if there are any."""

    def __init__(self, browser):
        self._browser = browser
        self.violations: list[dict] = []

    def new_context(self, **kwargs):
        context = self._browser.new_context(**kwargs)
        context.expose_function("__ledgerflowCspViolation", self._report)
        context.add_init_script(CSP_LISTENER)
        return context

    def _report(self, violation: dict) -> None:
        self.violations.append(violation)

    def new_page(self, **kwargs):
        return self.new_context(**kwargs).new_page()

    def __getattr__(self, name):
        return getattr(self._browser, name)

    def settle(self) -> None:
        """Let reports already queued in open pages arrive."""
        for context in self._browser.contexts:
            for page in context.pages:
                if not page.is_closed():
                    page.wait_for_timeout(100)
                    break

    def assert_no_csp_violations(self) -> None:
        self.settle()
        found, self.violations[:] = list(self.violations), []
        assert not found, f"Content-Security-Policy violations: {found}"


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        instance = CheckedBrowser(
            playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        )
        yield instance
        try:
            instance.assert_no_csp_violations()
        finally:
            instance.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(browser, live_server, username: str, password: str):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/flows/")
    browser.assert_no_csp_violations()
    return page
