"""The runs list: every run of every flow, filtered, in keyset pages that
neither skip nor repeat a run while new runs arrive, with a count that stops
at 10,000. Runs are started through the engine."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from runs import driver, selectors
from runs.models import Run
from tests.conftest import login
from tests.engine_helpers import chain, publish, transform

URL = reverse("runs:list")


def shown(response) -> list[int]:
    return [int(n) for n in re.findall(r'data-run="(\d+)"', response.content.decode())]


def next_link(response) -> str | None:
    found = re.search(r'href="\?([^"]*)"[^>]*rel="next"', response.content.decode())
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture
def two_flows(olga, eager_celery):
    orders = publish(olga, chain(transform("shape", order="{{ trigger.order }}")), slug="orders")
    refunds = publish(olga, chain(transform("shape", id="{{ trigger.id }}")), slug="refunds")
    refunds.name = "Refund requests"
    refunds.save()
    with eager_celery():
        for n in range(7):
            driver.start_run(flow=orders, input={"order": f"A-{n}"}, actor="webhook")
        for n in range(3):
            driver.start_run(flow=refunds, input={"id": f"R-{n}"}, actor="user:olga")
    return orders, refunds


def test_every_flows_runs_newest_first_with_status_step_and_duration(client, olga, two_flows):
    login(client, olga)
    response = client.get(URL)
    assert response.status_code == 200
    ids = shown(response)
    assert ids == list(Run.objects.order_by("-created_at", "-id").values_list("pk", flat=True))
    page = response.content.decode()
    assert "10 runs" in page and "Refund requests" in page and "succeeded" in page
    assert 'href="/runs/"' in page  # in the navigation


def test_filters_by_flow_name_status_trigger_dates_and_input_text(client, olga, two_flows):
    orders, refunds = two_flows
    login(client, olga)
    assert set(shown(client.get(URL, {"flow": "refund"}))) == set(
        refunds.runs.values_list("pk", flat=True)
    )
    assert len(shown(client.get(URL, {"trigger": "webhook"}))) == 7
    assert len(shown(client.get(URL, {"trigger": "manual"}))) == 3
    assert len(shown(client.get(URL, {"status": "succeeded"}))) == 10
    assert shown(client.get(URL, {"status": "failed"})) == []
    a3 = Run.objects.get(input__order="A-3").pk
    assert shown(client.get(URL, {"q": "a-3"})) == [a3]
    today = timezone.localdate()
    assert len(shown(client.get(URL, {"started_from": today.isoformat()}))) == 10
    assert shown(client.get(URL, {"started_to": (today - timedelta(days=1)).isoformat()})) == []


def test_bad_filters_are_explained_and_the_rest_still_apply(client, olga, two_flows):
    login(client, olga)
    response = client.get(URL, {"status": "exploded", "started_from": "yesterday", "flow": "ord"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "“exploded” is not a run status." in page
    assert "“yesterday” is not a date (YYYY-MM-DD)." in page
    assert len(shown(response)) == 7


def test_a_damaged_page_link_says_so_and_shows_the_newest_runs(client, olga, two_flows):
    login(client, olga)
    response = client.get(URL, {"after": "not-a-cursor!!"})
    assert response.status_code == 400
    assert "This page link is damaged" in response.content.decode()
    assert len(shown(response)) == 10


def test_pages_neither_skip_nor_repeat_while_new_runs_arrive(
    client, olga, two_flows, eager_celery, monkeypatch
):
    orders, _ = two_flows
    monkeypatch.setattr(selectors, "PAGE_SIZE", 3)
    login(client, olga)
    before = list(Run.objects.order_by("-created_at", "-id").values_list("pk", flat=True))
    first = client.get(URL)
    seen, link = shown(first), next_link(first)
    assert len(seen) == 3 and link
    with eager_celery():  # a newer run starts while the operator pages
        driver.start_run(flow=orders, input={"order": "late"}, actor="webhook")
    while link:
        response = client.get(URL + "?" + link)
        seen += shown(response)
        link = next_link(response)
    assert seen == before


def test_the_count_stops_at_its_cap(two_flows, monkeypatch):
    monkeypatch.setattr(selectors, "COUNT_CAP", 4)
    page = selectors.runs_page(selectors.RunFilters(), size=2)
    assert (page.count, page.count_capped) == (4, True)
    page = selectors.runs_page(selectors.RunFilters(flow="refund"), size=2)
    assert (page.count, page.count_capped) == (3, False)


def test_an_answer_that_fits_on_one_page_is_counted_without_a_second_walk(two_flows):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        page = selectors.runs_page(selectors.RunFilters(flow="refund"))
    assert (page.count, page.count_capped, len(page.rows)) == (3, False, 3)
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    with CaptureQueriesContext(connection) as queries:
        page = selectors.runs_page(selectors.RunFilters(), size=4)
    assert (page.count, len(page.rows)) == (10, 4) and page.next_cursor
    assert any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)


def test_a_running_run_shows_the_step_it_waits_at(client, olga, eager_celery):
    graph = chain(
        transform("shape", n="{{ trigger.n }}"),
        {"id": "pause", "type": "delay", "config": {"seconds": 3600}},
    )
    flow = publish(olga, graph, slug="slow")
    with eager_celery():
        run = driver.start_run(flow=flow, input={"n": 1}, actor="webhook")
    login(client, olga)
    response = client.get(URL)
    row = re.search(rf'data-run="{run.pk}">(.*?)</tr>', response.content.decode(), re.S).group(1)
    assert "<code>pause</code>" in row and "so far" in row


def keyed_graph(template: str = "{{ trigger.order_id }}") -> dict:
    graph = chain(transform("shape", amount="{{ trigger.amount }}"))
    graph["settings"] = {"business_key": template}
    return graph


def test_a_business_key_finds_an_orders_runs_exactly(client, olga, eager_celery):
    flow = publish(olga, keyed_graph(), slug="keyed-orders")
    with eager_celery():
        first = driver.start_run(flow=flow, input={"order_id": "A-1", "amount": 5}, actor="webhook")
        driver.start_run(flow=flow, input={"order_id": "A-10", "amount": 7}, actor="webhook")
        again = driver.start_run(flow=flow, input={"order_id": "A-1", "amount": 5}, actor="webhook")
        # An input without the key still runs; it is only harder to find.
        bare = driver.start_run(flow=flow, input={"amount": 1}, actor="webhook")
    assert (first.business_key, bare.business_key) == ("A-1", "")
    assert bare.status == "succeeded"
    login(client, olga)
    response = client.get(URL, {"key": "A-1"})
    assert shown(response) == [again.pk, first.pk]  # not A-10: exact, not a prefix
    assert "<code>A-1</code>" in response.content.decode()


def test_the_business_key_comes_back_from_the_event_log(olga, eager_celery):
    from django.core.management import call_command

    flow = publish(olga, keyed_graph(), slug="keyed-orders")
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "B-7", "amount": 1}, actor="webhook")
    call_command("rebuild_projections")
    assert Run.objects.get(pk=run.pk).business_key == "B-7"


def test_a_business_key_may_read_only_the_trigger(olga):
    from flows import graph as flow_graph

    with pytest.raises(flow_graph.InvalidGraph) as caught:
        flow_graph.validate(keyed_graph("{{ steps.shape.output.amount }}"))
    assert any(e.field == "settings.business_key" for e in caught.value.errors)
