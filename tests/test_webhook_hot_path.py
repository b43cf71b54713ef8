"""The webhook's hot path through the real ASGI server (uvicorn, in a
thread): an answer that ran inline goes out without a poll, a flow's status
is read fresh on every delivery, and one delivery's database work does not
hold up another's."""

import threading

import httpx
import pytest
from django.db import connection, transaction

from connectors.triggers import webhook_receiver
from connectors.triggers.models import Watermark
from flows import services
from runs.models import Run
from tests.engine_helpers import transform
from tests.trigger_helpers import pause, token_of, triggered_flow, wait_until, webhook

ANSWER = {
    "id": "answer",
    "type": "webhook.respond",
    "config": {"status": 200, "body": {"total": "{{ steps.sum.output.total }}"}},
}


def answering_flow(actor):
    return triggered_flow(
        actor,
        webhook(respond="respond_node"),
        transform("sum", total="{{ trigger.body.a + trigger.body.b }}"),
        ANSWER,
        slug="answers",
    )


def deliver(server: str, flow, body: dict, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"http://{server}/hooks/{token_of(flow)}/", json=body, timeout=timeout)


@pytest.fixture
def no_polls(monkeypatch):
    """Any poll for a Respond step's answer fails the delivery (a 500)."""

    def poll(run_id, node):
        raise AssertionError("polled for an answer the start had already committed")

    monkeypatch.setattr(webhook_receiver, "response_of", poll)


def test_an_answer_that_ran_inline_goes_out_without_a_poll(asgi_server, olga, no_polls):
    flow = answering_flow(olga)
    response = deliver(asgi_server, flow, {"a": 2, "b": 3})
    assert response.status_code == 200 and response.json() == {"total": 5}
    run = Run.objects.get(pk=int(response.headers["Ledgerflow-Run"]))
    assert run.status == "succeeded"
    assert run.steps.get(node_id="answer").output["body"] == {"total": 5}


def test_a_paused_flow_refuses_the_very_next_delivery(asgi_server, olga):
    flow = answering_flow(olga)
    assert deliver(asgi_server, flow, {"a": 1, "b": 1}).json() == {"total": 2}
    pause(flow, olga)
    refused = deliver(asgi_server, flow, {"a": 1, "b": 2})
    assert refused.status_code == 409 and "paused" in refused.json()["error"]
    services.flow_transition(flow=flow, actor=olga, action="activate")
    assert deliver(asgi_server, flow, {"a": 2, "b": 2}).json() == {"total": 4}
    assert Run.objects.filter(flow=flow).count() == 2


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        # Statistics are a snapshot per transaction, and this test asks
        # from inside one: take a new snapshot each time.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_a_delivery_waiting_on_a_lock_does_not_hold_up_the_next(asgi_server, olga):
    """Deliveries for one entity take its watermark row's lock in turn. While
    this test holds entity A's lock, a delivery for A waits on it inside the
    server; a delivery for B must still be taken, which it could not if the
    server ran deliveries' database work one after another."""
    flow = triggered_flow(olga, webhook(ordering_field="v", entity_field="id"), slug="ordered")
    assert deliver(asgi_server, flow, {"id": "A", "v": 1}).status_code == 202
    blocked: dict = {}
    with transaction.atomic():
        Watermark.objects.select_for_update().get(flow=flow, entity="A")
        waiting = threading.Thread(
            target=lambda: blocked.update(response=deliver(asgi_server, flow, {"id": "A", "v": 2}))
        )
        waiting.start()
        assert wait_until(lambda: lock_waiters() == 1), "the delivery for A never waited"
        other = deliver(asgi_server, flow, {"id": "B", "v": 1}, timeout=10)
        assert other.status_code == 202
        assert "response" not in blocked  # A still waits for this test's lock
    waiting.join(timeout=30)
    assert blocked["response"].status_code == 202
    assert Run.objects.filter(flow=flow).count() == 3
