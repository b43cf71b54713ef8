"""Every page, as every role, on the demo data: a crawl from the navigation
through every same-origin link, with each live fragment a page polls for
fetched as its poll fetches it. No page may answer 5xx or come back with an
empty main area, no poll may miss the element it swaps in, and every GET URL
pattern must be reached (or listed below with the reason it is not)."""

import io
from collections import Counter, deque
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import Resolver404, resolve, reverse

from runs import decider
from runs.models import Run, Step
from tests import test_roles_matrix as matrix

ROLES = ["admin", "operator", "reviewer"]
MAX_PAGES = 600  # per role
MAX_PER_PATTERN = 12  # distinct URLs of one pattern (runs, flows, query strings)
# Visiting them would change the state being crawled, or is not a page.
SKIP_PATHS = ("/logout/", "/static/")

# GET patterns no link reaches, and why that is right.
UNLINKED = {
    "login": "the crawl is logged in; the login page redirects a logged-in user away",
    "healthz": "a probe for the process manager, not a page",
    "readyz": "a probe for the process manager, not a page",
    "metrics": "scraped by Prometheus with a bearer token, not a page",
    "audit_log_moved": "the audit trail's earlier address, kept for old bookmarks",
    "api:api-root": "django-ninja's mount point: it only anchors the API's paths",
    "api:openapi-json": "the schema the API reference page loads from script",
    "approvals:link": "a signed link sent by email, never shown on a page",
    "api:flow_draft": "the flow editor's script reads it",
    "api:flow_versions": "the flow editor's API: versions, read by script",
    "api:flow_version": "the flow editor's script reads it before publishing",
    "api:credential_names": "the flow editor's script fills credential fields from it",
    "api:flow_export": "a download the flow editor's script links to",
    "api:flow_test_run_list": "the flow editor's script reads the last test run's input",
    "api:flow_test_run": "the flow editor's script polls a test run it started",
    "api:run_diagram": "for API clients: the run page embeds the same graph and step rows",
    "api:dead_letters_replay_preview": "for API clients: the inbox links to the preview page",
    "api:run": "for API clients (scripts, CI): the run page shows the same",
    "api:runs": "for API clients (the ledgerflow CLI): the runs list shows the same",
    "api:dead_letters": "for API clients (the ledgerflow CLI): the inbox shows the same",
    "api:approval_tasks": "for API clients (scripts, CI): the inbox shows the same",
}

JUNK_VALUES = ["zz-not-a-value", "-1", "99999999999999999999999", "run:", "<b>'\"", "\x00"]

# Pages outside the site's layout, so without its main area.
NO_LAYOUT = {"api:openapi-view": "django-ninja's API reference, drawn by its own script"}


class Page(HTMLParser):
    """The links (and GET forms, submitted as they stand), the polled or
    loaded fragments and the main area's text."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.form: dict | None = None  # the GET form being read
        self.select: str | None = None
        self.fragments: list[dict] = []
        self.main_depth = 0
        self.has_main = False
        self.main_text: list[str] = []
        self.main_tags = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        self._read_form(tag, attrs)
        if attrs.get("hx-get"):
            self.fragments.append(attrs)
        elif attrs.get("data-live-url") and attrs.get("id"):
            # A live run page in channels mode: static/runs-live.js asks for
            # this fragment when the socket says so, as a poll would.
            target = f"#{attrs['id']}"
            self.fragments.append({"id": attrs["id"], "hx-get": attrs["data-live-url"],
                                   "hx-target": target, "hx-select": target})  # fmt: skip
        if tag == "main":
            self.main_depth += 1
            self.has_main = True
        elif self.main_depth:
            self.main_tags += 1

    def handle_endtag(self, tag):
        if tag == "main" and self.main_depth:
            self.main_depth -= 1
        if tag == "select":
            self.select = None
        if tag == "form" and self.form is not None:
            query = urlencode(self.form["fields"])
            self.links.append(self.form["action"] + (f"?{query}" if query else ""))
            self.form = None

    def _read_form(self, tag, attrs):
        if tag == "form":
            method = (attrs.get("method") or "get").lower()
            if method == "get" and not attrs.get("hx-post"):
                self.form = {"action": attrs.get("action") or "", "fields": []}
            return
        if self.form is None or not attrs.get("name") and tag != "option":
            return
        if tag == "input" and attrs.get("type") not in ("submit", "button", "checkbox", "radio"):
            self.form["fields"].append((attrs["name"], attrs.get("value") or ""))
        elif tag == "input" and "checked" in attrs:
            self.form["fields"].append((attrs["name"], attrs.get("value") or "on"))
        elif tag == "textarea":
            self.form["fields"].append((attrs["name"], ""))
        elif tag == "select":
            self.select = attrs["name"]
        elif tag == "option" and self.select is not None:
            # The first option, as a browser submits an untouched select.
            self.form["fields"].append((self.select, attrs.get("value") or ""))
            self.select = None

    def handle_data(self, data):
        if self.main_depth:
            self.main_text.append(data)

    @property
    def main_is_empty(self) -> bool:
        return len(" ".join("".join(self.main_text).split())) < 20 or self.main_tags < 2


def pattern_of(path: str) -> str | None:
    try:
        match = resolve(path)
    except Resolver404:
        return None
    return match.view_name


def element_ids(html: str) -> set[str]:
    class Ids(HTMLParser):
        found: set[str] = set()

        def handle_starttag(self, tag, attrs):
            value = dict(attrs).get("id")
            if value:
                self.found.add(value)

    parser = Ids()
    parser.found = set()
    parser.feed(html)
    return parser.found


class Crawl:
    def __init__(self, client, role: str):
        self.client, self.role = client, role
        self.visited: dict[str, int] = {}
        self.per_pattern: Counter = Counter()
        self.patterns: set[str] = set()
        self.faults: list[str] = []
        self.fragments_fetched = 0

    def run(self, start: list[str], follow: bool = True) -> None:
        queue = deque(start)
        while queue and len(self.visited) < MAX_PAGES:
            url = queue.popleft()
            if url in self.visited or not self._wanted(url):
                continue
            found = self._visit(url)
            if follow:
                queue.extend(found)

    def _wanted(self, url: str) -> bool:
        path = urlsplit(url).path
        if path.startswith(SKIP_PATHS):
            return False
        pattern = pattern_of(path) or path
        return self.per_pattern[pattern] < MAX_PER_PATTERN

    def _visit(self, url: str) -> list[str]:
        response = self.client.get(url)
        self.visited[url] = response.status_code
        pattern = pattern_of(urlsplit(url).path)
        self.per_pattern[pattern or url] += 1
        if pattern:
            self.patterns.add(pattern)
        if response.status_code >= 500:
            self.faults.append(f"{self.role}: GET {url} answered {response.status_code}")
            return []
        if response.status_code in (301, 302, 303, 307, 308):
            return (
                [self._same_origin(url, response["Location"])] if response.get("Location") else []
            )
        if not response.get("Content-Type", "").startswith("text/html"):
            return []
        page = Page()
        page.feed(response.content.decode())
        if response.status_code == 200 and not page.has_main and pattern not in NO_LAYOUT:
            self.faults.append(f"{self.role}: GET {url} has no main area")
        elif response.status_code == 200 and page.has_main and page.main_is_empty:
            self.faults.append(f"{self.role}: GET {url} has an empty main area")
        for fragment in page.fragments:
            self._fetch_fragment(url, fragment)
        return [link for href in page.links if (link := self._same_origin(url, href))]

    def _fetch_fragment(self, page_url: str, attrs: dict) -> None:
        """Ask for a fragment the way htmx does, and check the reply holds
        the element htmx will select from it."""
        url = self._same_origin(page_url, attrs["hx-get"])
        if url is None:
            return
        target = attrs.get("hx-target", "this")
        target_id = attrs.get("id", "") if target == "this" else target.lstrip("#")
        headers = {"HX-Request": "true", "HX-Current-URL": f"http://testserver{page_url}"}
        if target_id:
            headers["HX-Target"] = target_id
        response = self.client.get(url, headers=headers)
        self.fragments_fetched += 1
        if pattern := pattern_of(urlsplit(url).path):
            self.patterns.add(pattern)
        where = f"{self.role}: the fragment {url} of {page_url} (target #{target_id})"
        if response.status_code >= 500:
            self.faults.append(f"{where} answered {response.status_code}")
            return
        if response.status_code != 200:
            return
        body = response.content.decode()
        selected = attrs.get("hx-select", "").lstrip("#")
        if selected and selected not in element_ids(body):
            self.faults.append(f"{where} has no #{selected} for hx-select to swap in")
        elif not body.strip():
            self.faults.append(f"{where} is empty")

    def probe_queries(self) -> int:
        """Each query parameter seen, once per pattern, with values no form
        offers: a bad value is a clear answer, never a 5xx."""
        probed = set()
        for url in list(self.visited):
            parts = urlsplit(url)
            pattern = pattern_of(parts.path)
            for name, _ in parse_qsl(parts.query, keep_blank_values=True):
                if (pattern, name) in probed:
                    continue
                probed.add((pattern, name))
                for junk in JUNK_VALUES:
                    query = urlencode({name: junk})
                    response = self.client.get(f"{parts.path}?{query}")
                    if response.status_code >= 500:
                        self.faults.append(
                            f"{self.role}: GET {parts.path}?{query} answered {response.status_code}"
                        )
        return len(probed)

    def probe_paths(self) -> int:
        """Each pattern seen, with ids and names that do not exist (or do
        not fit a database integer): a 404, never a 5xx."""
        probed = 0
        for pattern in sorted(self.patterns):
            url = next((u for u in self.visited if pattern_of(urlsplit(u).path) == pattern), "")
            kwargs = resolve(urlsplit(url).path).kwargs if url else {}
            for name, value in kwargs.items():
                for junk in (0, 2**63 + 1) if isinstance(value, int) else ("zz-missing",):
                    path = reverse(pattern, kwargs={**kwargs, name: junk})
                    status = self.client.get(path).status_code
                    probed += 1
                    if status >= 500:
                        self.faults.append(f"{self.role}: GET {path} answered {status}")
        return probed

    @staticmethod
    def _same_origin(base: str, href: str) -> str | None:
        absolute = urljoin(f"http://testserver{base}", href)
        parts = urlsplit(absolute)
        if parts.scheme != "http" or parts.netloc != "testserver":
            return None
        return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.fixture
def demo(db, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    call_command("seed_demo", stdout=io.StringIO())


def test_the_demo_has_a_run_of_each_kind(demo):
    statuses = {run.flow.slug: run.status for run in Run.objects.select_related("flow")}
    assert statuses["refund-approvals"] == decider.RUN_WAITING
    assert set(Run.objects.values_list("status", flat=True)) == {"succeeded", "waiting"}
    dead = Step.objects.get(status=decider.DEAD_LETTERED)
    assert dead.run.status == decider.RUN_WAITING and "address" in dead.error
    # Safe to run again: nothing new.
    call_command("seed_demo", stdout=io.StringIO())
    assert Run.objects.count() == 3


@pytest.fixture
def backfilled(demo):
    """A scheduled flow with a backfill, so the crawl reaches the backfill
    pages from its flow page (the demo has no scheduled flow of its own)."""
    import datetime as dt

    from connectors.triggers import backfills
    from runs.ground import clock
    from tests.engine_helpers import publish, transform

    operator = get_user_model().objects.get(username="operator")
    trigger = {"id": "at", "type": "trigger.schedule", "config": {"cron": "0 * * * *"}}
    graph = {
        "nodes": [trigger, transform("seen", ok=True)],
        "edges": [{"from": "at", "to": "seen"}],
    }
    with clock.frozen_at(dt.datetime(2026, 6, 1, 0, 30, tzinfo=dt.UTC)):
        flow = publish(operator, graph, slug="hourly-report")
    with clock.frozen_at(dt.datetime(2026, 6, 1, 1, 0, tzinfo=dt.UTC)):
        backfills.backfill_request(flow, start=dt.datetime(2026, 5, 31, tzinfo=dt.UTC),
                                   end=dt.datetime(2026, 5, 31, 2, tzinfo=dt.UTC),
                                   max_in_flight=2, actor=operator)  # fmt: skip


def test_every_page_as_every_role(client, demo, backfilled):
    User = get_user_model()
    client.raise_request_exception = False  # a 500 is a finding, not the end
    reached: set[str] = set()
    faults: list[str] = []
    for role in ROLES:
        client.force_login(User.objects.get(username=role))
        crawl = Crawl(client, role)
        crawl.run(["/"])
        assert len(crawl.visited) > 10, f"{role} reached only {crawl.visited}"
        assert crawl.probe_queries() >= 3 and crawl.probe_paths() >= 2
        faults += crawl.faults
        reached |= crawl.patterns
        client.logout()
    assert not faults, "\n".join(faults)
    get_patterns = {name for name, (method, _) in matrix.MATRIX.items() if method == "GET"}
    assert set(UNLINKED) <= get_patterns, "UNLINKED names a pattern that is not a GET page"
    unvisited = get_patterns - reached - set(UNLINKED)
    assert not unvisited, f"no link reaches these GET pages: {sorted(unvisited)}"
    assert not reached & set(UNLINKED), "UNLINKED lists pages a link does reach"


@pytest.mark.parametrize("mode", ["channels", "polling"])
def test_a_live_run_page_is_whole_after_its_first_live_update(client, demo, settings, mode):
    """The crawl's fragment check, on its own: the waiting runs' pages poll
    (or listen, and fetch the same fragment), and the reply holds what it
    swaps in."""
    settings.LEDGERFLOW_LIVE_UPDATES = mode
    client.force_login(get_user_model().objects.get(username="operator"))
    client.raise_request_exception = False
    crawl = Crawl(client, "operator")
    live = Run.objects.filter(status__in=decider.RUN_LIVE)
    assert live.count() == 2
    crawl.run([f"/runs/{run.pk}/" for run in live], follow=False)
    assert crawl.fragments_fetched >= 2
    assert not crawl.faults, "\n".join(crawl.faults)
