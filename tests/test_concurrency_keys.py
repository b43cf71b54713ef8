"""Concurrency keys: runs of a flow whose trigger renders the same key run one
at a time, in arrival order; other keys run side by side. Real threads, real
commits, the real payments API slowed down so that overlaps would show."""

import io
import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection

from runs import driver, sweeper
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run
from tests.conftest import login
from tests.engine_helpers import chain, publish
from tests.payments_helpers import charge_node, control, report


def keyed_flow(olga, payments):
    node = charge_node(payments, retry={"max_attempts": 1})
    node["config"]["json_body"]["seq"] = "{{ trigger.seq }}"
    graph = chain(node)
    graph["settings"] = {"concurrency_key": "{{ trigger.order_id }}"}
    return publish(olga, graph, slug="keyed")


def _start_in_thread(flow, payload: dict) -> threading.Thread:
    def run() -> None:
        try:
            driver.start_run(flow=flow, input=payload, actor="u")
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _spans(payments, order: str) -> list[dict]:
    timeline = report(payments)["timeline"]
    return [s for s in timeline if s["path"] == "/charges" and s["body"]["order_id"] == order]


@pytest.mark.django_db(transaction=True)
def test_runs_with_one_key_never_overlap_and_go_in_arrival_order(olga, payments, celery_in_thread):
    flow = keyed_flow(olga, payments)
    control(payments, latency_ms=[300, 300])
    threads = []
    for seq in range(3):
        threads.append(_start_in_thread(flow, {"order_id": "o-1", "amount": 5, "seq": seq}))
        time.sleep(0.1)  # arrivals while the first charge is in flight
    for thread in threads:
        thread.join(timeout=30)
    runs = list(Run.objects.filter(flow=flow).order_by("pk"))
    assert [run.status for run in runs] == ["succeeded"] * 3
    spans = _spans(payments, "o-1")
    assert [span["body"]["seq"] for span in spans] == [0, 1, 2]  # arrival order
    for earlier, later in zip(spans, spans[1:], strict=False):
        assert earlier["end"] <= later["start"], spans
    for run in runs[1:]:  # the later two waited, visibly, and were released
        types = list(Event.objects.filter(stream=run.stream).order_by("seq")
                     .values_list("type", flat=True))  # fmt: skip
        assert types[:3] == ["run.started", "run.queued", "run.released"]


@pytest.mark.django_db(transaction=True)
def test_runs_with_different_keys_overlap(olga, payments, celery_in_thread):
    flow = keyed_flow(olga, payments)
    control(payments, latency_ms=[400, 400])
    threads = [
        _start_in_thread(flow, {"order_id": order, "amount": 5, "seq": 0})
        for order in ("a-1", "b-1")
    ]
    for thread in threads:
        thread.join(timeout=30)
    (first,), (second,) = _spans(payments, "a-1"), _spans(payments, "b-1")
    assert first["start"] < second["end"] and second["start"] < first["end"]
    assert not Run.objects.filter(flow=flow).exclude(status="succeeded").exists()


def test_the_sweep_releases_a_queued_run_whose_release_was_lost(olga, payments, client):
    # No eager tasks: every message (the charge, the release) goes nowhere.
    flow = keyed_flow(olga, payments)
    first = driver.start_run(flow=flow, input={"order_id": "o-9", "amount": 5, "seq": 0}, actor="u")
    second = driver.start_run(
        flow=flow, input={"order_id": "o-9", "amount": 5, "seq": 1}, actor="u"
    )
    second.refresh_from_db()
    assert (second.status, second.wait_reason, second.concurrency_key) == (
        "waiting", "concurrency", "o-9",
    )  # fmt: skip
    page = login(client, olga).get(f"/runs/{second.pk}/").content.decode()
    assert "Queued: an earlier run with concurrency key" in page
    assert sweeper.sweep(clock.now())["released"] == 0  # its predecessor is unfinished
    driver.cancel_run(first.pk, actor="user:olga", reason="customer left")
    second.refresh_from_db()
    assert second.wait_reason == "concurrency"  # its release message was lost
    assert sweeper.sweep(clock.now())["released"] == 1
    second.refresh_from_db()
    assert (second.status, second.wait_reason) == ("running", "")
    assert sweeper.sweep(clock.now())["released"] == 0

    before = list(Run.objects.order_by("pk").values())
    Run.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert list(Run.objects.order_by("pk").values()) == before


def test_a_key_that_cannot_be_computed_refuses_the_start(olga, payments):
    flow = keyed_flow(olga, payments)
    with pytest.raises(driver.StartRefused, match="concurrency key cannot be computed"):
        driver.start_run(flow=flow, input={"amount": 5}, actor="u")
    assert not Run.objects.filter(flow=flow).exists()


def test_a_concurrency_key_may_read_only_the_trigger(olga, payments):
    from flows.graph import InvalidGraph, validate

    graph = chain(charge_node(payments))
    graph["settings"] = {"concurrency_key": "{{ steps.charge.output.id }}"}
    with pytest.raises(InvalidGraph, match="may read only the trigger"):
        validate(graph)
