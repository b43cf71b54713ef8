"""The dashboard: runs per hour, success rate and durations over the last
48 hours, overall and per flow, computed from the database; test runs are
left out. Runs are started, dead-lettered and discarded through the engine at
frozen times, and every figure is checked against the run rows themselves."""

import datetime as dt
import math

import pytest
from django.urls import reverse

from config import dashboard as figures
from flows import services, testruns
from runs import driver
from runs.ground import clock
from runs.models import Run, Step
from tests.approval_helpers import INPUT, approval_flow
from tests.conftest import login
from tests.engine_helpers import chain, publish, transform
from tests.test_breakers import open_the_breaker, store  # noqa: F401 (fixture)
from tests.test_schedules import schedule
from tests.trigger_helpers import triggered_flow

URL = reverse("dashboard")
# Half past an hour, days ahead of the flows' creation, so the window is ours.
NOW = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).replace(minute=30, second=0, microsecond=0)
GOOD, BAD = {"order": {"id": 1}}, {}


def shaped(slug: str, olga):
    return publish(olga, chain(transform("calc", x="{{ trigger.order.id }}")), slug=slug)


def start(flow, eager_celery, payload: dict, at: dt.datetime) -> Run:
    with clock.frozen_at(at), eager_celery():
        return driver.start_run(flow=flow, input=payload, actor="webhook")


def discard(run: Run, at: dt.datetime) -> None:
    with clock.frozen_at(at):
        driver.discard_dead_letter(run.pk, "calc", actor="user:olga", reason="bad order")


@pytest.fixture
def activity(olga, eager_celery):
    """orders: 3 good and 1 failed (after an hour) 30 h ago, 2 good and one
    still dead-lettered 2 h ago, 2 good 50 h ago (outside the window);
    refunds: 1 good and 1 failed (after 10 minutes) an hour ago; and a failing
    test run of the orders draft, which counts nowhere."""
    orders, refunds = shaped("orders", olga), shaped("refunds", olga)
    for _ in range(3):
        start(orders, eager_celery, GOOD, NOW - dt.timedelta(hours=30))
    discard(
        start(orders, eager_celery, BAD, NOW - dt.timedelta(hours=30)), NOW - dt.timedelta(hours=29)
    )
    for _ in range(2):
        start(orders, eager_celery, GOOD, NOW - dt.timedelta(hours=2))
        start(orders, eager_celery, GOOD, NOW - dt.timedelta(hours=50))
    start(orders, eager_celery, BAD, NOW - dt.timedelta(hours=2))
    start(refunds, eager_celery, GOOD, NOW - dt.timedelta(hours=1))
    failed = start(refunds, eager_celery, BAD, NOW - dt.timedelta(hours=1))
    discard(failed, NOW - dt.timedelta(minutes=50))
    with clock.frozen_at(NOW - dt.timedelta(hours=1)), eager_celery():
        test_run = testruns.test_run_start(flow=orders, actor="user:olga", input=BAD)
    assert Step.objects.get(run=test_run, node_id="calc").status == "dead_lettered"
    return orders, refunds


def dashboard_of(client, user, **params):
    login(client, user)
    with clock.frozen_at(NOW):
        response = client.get(URL, params)
    assert response.status_code == 200
    return response


def expected_hourly(runs) -> dict[str, list[int]]:
    """The same figures counted in Python from the rows."""
    since = NOW.replace(minute=0) - dt.timedelta(hours=47)
    counts = {key: [0] * 48 for key in ("started", "succeeded", "failed")}
    for run in runs.filter(is_test=False):
        slot = int((run.created_at - since).total_seconds() // 3600)
        if 0 <= slot < 48:
            counts["started"][slot] += 1
            if run.status in ("succeeded", "failed"):
                counts[run.status][slot] += 1
    return counts


def expected_percentile(durations: list[dt.timedelta], p: int) -> dt.timedelta:
    return sorted(durations)[math.ceil(p / 100 * len(durations)) - 1]


def test_overall_figures_match_the_runs_and_leave_test_runs_out(client, olga, activity):
    response = dashboard_of(client, olga)
    series = response.context["series"]
    expected = expected_hourly(Run.objects.all())
    assert {key: series[key] for key in expected} == expected
    assert (sum(series["started"]), sum(series["succeeded"]), sum(series["failed"])) == (9, 6, 2)
    assert series["hours"][0] == int((NOW.replace(minute=0) - dt.timedelta(hours=47)).timestamp())
    assert response.context["success_rate"] == 6 / 8
    # Six instant successes, a failure after 10 minutes and one after an hour.
    durations = response.context["durations"]
    finished = [
        r.finished_at - r.created_at
        for r in Run.objects.filter(is_test=False, finished_at__isnull=False)
        if r.created_at >= NOW - dt.timedelta(hours=48)
    ]
    assert durations.p50 == expected_percentile(finished, 50) == dt.timedelta(0)
    assert durations.p95 == expected_percentile(finished, 95) == dt.timedelta(hours=1)
    # The test run's dead letter is not the flow's backlog.
    assert response.context["dead_letters"] == 1
    page = response.content.decode()
    assert 'id="figure-started">9<' in page and 'id="figure-success-rate">75%<' in page
    assert 'id="figure-p95">1 h 0 min<' in page
    assert '<script id="runs-series" type="application/json">' in page
    assert 'href="/dashboard/"' in page  # in the navigation


def test_one_flows_figures(client, rita, activity):
    _orders, refunds = activity
    response = dashboard_of(client, rita, flow="refunds")
    series = response.context["series"]
    assert {key: series[key] for key in ("started", "succeeded", "failed")} == expected_hourly(
        refunds.runs.all()
    )
    assert sum(series["started"]) == 2
    assert response.context["success_rate"] == 0.5
    assert response.context["durations"].p50 == dt.timedelta(0)
    assert response.context["durations"].p95 == dt.timedelta(minutes=10)
    assert response.context["dead_letters"] == 0
    assert "Dashboard: refunds" in response.content.decode()


def test_a_quiet_window_says_so_rather_than_inventing_a_rate(client, adam, db):
    response = dashboard_of(client, adam)
    assert response.context["success_rate"] is None
    assert response.context["durations"].p50 is None
    assert response.context["series"]["started"] == [0] * 48
    assert 'id="figure-success-rate">—<' in response.content.decode()


@pytest.mark.parametrize("slug", ["no-such-flow", "<b>'\"", "x" * 300])
def test_an_unknown_flow_is_a_clear_404(client, olga, activity, slug):
    login(client, olga)
    response = client.get(URL, {"flow": slug})
    assert response.status_code == 404
    assert "There is no flow named" in response.content.decode()


def test_open_breakers_overall_and_for_the_flow_that_calls_them(
    client,
    olga,
    payments,
    eager_celery,
    store,  # noqa: F811
):
    _runs, flow = open_the_breaker(olga, payments, eager_celery)
    target = payments.url.removeprefix("http://")
    shaped("quiet", olga)
    assert figures.breakers_open(None) == [target]
    assert figures.breakers_open(flow) == [target]
    login(client, olga)
    assert client.get(URL, {"flow": "quiet"}).context["breakers_open"] == []
    assert target in client.get(URL, {"flow": flow.slug}).content.decode()


def test_schedules_next_fire_for_active_flows_only(client, olga):
    published = NOW - dt.timedelta(days=1)
    with clock.frozen_at(published):
        nightly = triggered_flow(olga, schedule("0 3 * * *", timezone="UTC"), slug="nightly")
        paused = triggered_flow(olga, schedule("0 4 * * *", timezone="UTC"), slug="paused")
        services.flow_transition(flow=paused, actor=olga, action="pause")
    response = dashboard_of(client, olga)
    fires = response.context["next_fires"]
    assert [(fire.flow, fire.at) for fire in fires] == [
        (nightly, (NOW + dt.timedelta(days=1)).replace(hour=3, minute=0)
         if NOW.hour >= 3 else NOW.replace(hour=3, minute=0))
    ]  # fmt: skip


def test_approvals_waiting_and_overdue_per_flow(client, olga, eager_celery):
    refunds = approval_flow(olga, slug="refunds", sla_hours=2)
    shaped("quiet", olga)
    start(refunds, eager_celery, INPUT, NOW - dt.timedelta(hours=5))  # due 3 h ago
    start(refunds, eager_celery, INPUT, NOW - dt.timedelta(hours=1))  # due in an hour
    overall = dashboard_of(client, olga).context["approvals"]
    assert (overall["waiting"], overall["overdue"]) == (2, 1)
    assert dashboard_of(client, olga, flow="quiet").context["approvals"]["waiting"] == 0
