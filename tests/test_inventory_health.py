"""The inventory's health columns (last run, success over 7 days, dead
letters) and the inventory audit's "failing silently": active flows whose
runs failed with nobody acting since. Runs go through the engine at frozen
times; people act through the same services the pages call."""

import datetime as dt

import pytest
from django.urls import reverse

from flows import services, testruns
from flows.inventory import failing_silently
from runs import driver
from runs.ground import clock
from tests.conftest import login
from tests.test_dashboard import BAD, GOOD, NOW, discard, shaped, start


def ago(**delta) -> dt.datetime:
    return NOW - dt.timedelta(**delta)


def row_of(page: str, name: str) -> str:
    start_at = page.index(f">{name}</a>")
    return page[start_at : page.index("</tr>", start_at)]


@pytest.fixture
def orders(olga, eager_celery):
    """3 good and 1 failed two days ago, 2 failed ten days ago (outside the
    week), one dead-lettered an hour ago, then a failing test run."""
    flow = shaped("orders", olga)
    for _ in range(3):
        start(flow, eager_celery, GOOD, ago(days=2))
    discard(start(flow, eager_celery, BAD, ago(days=2)), ago(days=2))
    for _ in range(2):
        discard(start(flow, eager_celery, BAD, ago(days=10)), ago(days=10))
    flow.dead_lettered = start(flow, eager_celery, BAD, ago(hours=1))
    with clock.frozen_at(ago(minutes=30)), eager_celery():
        testruns.test_run_start(flow=flow, actor="user:olga", input=BAD)
    return flow


def test_inventory_shows_last_run_weekly_success_and_dead_letters(client, rita, orders, olga):
    shaped("quiet", olga)
    login(client, rita)
    with clock.frozen_at(NOW):
        page = client.get(reverse("flows:inventory")).content.decode()
    busy = row_of(page, "orders")
    # The test run came later, but it is not the flow's record in service.
    assert f'href="/runs/{orders.dead_lettered.pk}/"' in busy
    assert ago(hours=1).strftime("%Y-%m-%d %H:%M") in busy
    assert ">75%<" in busy  # 3 of 4 finished this week; the older failures are out
    assert (
        '<td class="health-dead-letters"><a class="warn" href="/runs/dead-letters/">1</a>' in busy
    )
    quiet = row_of(page, "quiet")
    assert (
        '<span class="muted">none</span>' in quiet and '<td class="health-dead-letters">0' in quiet
    )


def test_a_flow_failing_with_nobody_acting_is_failing_silently(client, adam, olga, eager_celery):
    silent = shaped("silent", olga)
    start(silent, eager_celery, BAD, ago(days=1))
    start(silent, eager_celery, GOOD, ago(hours=2))  # a later success is not an action
    discarded = shaped("discarded", olga)
    discard(start(discarded, eager_celery, BAD, ago(days=1)), ago(hours=20))
    restarted = shaped("restarted", olga)
    start(restarted, eager_celery, BAD, ago(days=1))
    with clock.frozen_at(ago(hours=12)), eager_celery():
        driver.start_run(flow=restarted, input=GOOD, actor="user:olga")
    paused_and_back = shaped("paused-and-back", olga)
    start(paused_and_back, eager_celery, BAD, ago(days=1))
    with clock.frozen_at(ago(hours=6)):
        services.flow_transition(flow=paused_and_back, actor=olga, action="pause")
        services.flow_transition(flow=paused_and_back, actor=olga, action="activate")
    long_ago = shaped("long-ago", olga)
    start(long_ago, eager_celery, BAD, ago(days=9))
    tested = shaped("tested", olga)
    with clock.frozen_at(ago(days=1)), eager_celery():
        testruns.test_run_start(flow=tested, actor="user:olga", input=BAD)
    # Started by a person and failing at once: the start is not an action
    # taken after the failure.
    by_hand = shaped("by-hand", olga)
    with clock.frozen_at(ago(days=1)), eager_celery():
        driver.start_run(flow=by_hand, input=BAD, actor="user:olga")

    with clock.frozen_at(NOW):
        found = failing_silently()
        login(client, adam)
        page = client.get(reverse("flows:audit")).content.decode()
    assert [(f.flow.slug, f.first_failure_at, len(f.failed_runs)) for f in found] == [
        ("by-hand", ago(days=1), 1),
        ("silent", ago(days=1), 1),
    ]
    section = page[page.index('id="failing-silently"') :]
    assert ">silent</a>" in section and ">by-hand</a>" in section
    assert ">discarded</a>" not in section and ">restarted</a>" not in section


def test_nothing_failing_says_so(client, adam, db):
    login(client, adam)
    page = client.get(reverse("flows:audit")).content.decode()
    assert "None: every recent failure has had someone" in page
