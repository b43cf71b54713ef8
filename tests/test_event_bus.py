"""Choreography: a flow emits an event to a topic; each flow listening to
the topic starts once per event, however often the emitting step runs."""

import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from connectors import base as connectors
from connectors.triggers.models import Binding, DeliveryRecord, Receipt
from runs import driver
from runs.ground import clock
from runs.models import Run, Step
from tests.conftest import login
from tests.engine_helpers import transform
from tests.trigger_helpers import pause, retire, triggered_flow

TOPIC = "orders.placed"


def emit(topic: str = TOPIC, payload: dict | None = None) -> dict:
    payload = payload or {"order": "{{ trigger.order }}"}
    return {"id": "announce", "type": "event.emit", "config": {"topic": topic, "payload": payload}}


def listener(olga, slug: str, topic: str = TOPIC):
    return triggered_flow(
        olga,
        {"type": "trigger.event", "config": {"topic": topic}},
        transform("got", order="{{ trigger.payload.order }}"),
        slug=slug,
    )


@pytest.fixture
def choreography(olga):
    publisher = triggered_flow(olga, {"type": "trigger.manual"}, emit(), slug="checkout")
    listeners = [listener(olga, "ship"), listener(olga, "invoice")]
    paused = pause(listener(olga, "loyalty"), olga)
    retired = retire(listener(olga, "legacy"), olga)
    return publisher, listeners, paused, retired


def test_an_event_starts_each_listening_flow_once(olga, eager_celery, choreography):
    publisher, (ship, invoice), paused, retired = choreography
    with eager_celery():
        run = driver.start_run(flow=publisher, input={"order": "E-1"}, actor="user:olga")
    run.refresh_from_db()
    assert run.status == "succeeded"
    output = Step.objects.get(run=run, node_id="announce").output
    assert output["topic"] == TOPIC and output["event_id"]
    statuses = {d["flow"]: d["status"] for d in output["deliveries"]}
    assert statuses == {"ship": "started", "invoice": "started", "loyalty": "refused"}
    for flow in (ship, invoice):
        started = Run.objects.get(flow=flow)
        assert started.status == "succeeded" and started.output["got"]["order"] == "E-1"
        assert started.input["event_id"] == output["event_id"]
    assert not Run.objects.filter(flow__in=[paused, retired]).exists()
    assert DeliveryRecord.objects.get(flow=paused).outcome == "refused"


def test_a_retried_emit_publishes_the_same_event_once(olga, eager_celery, choreography):
    publisher, (ship, invoice), paused, _ = choreography
    with eager_celery():
        run = driver.start_run(flow=publisher, input={"order": "E-2"}, actor="user:olga")
    step = Step.objects.get(run=run, node_id="announce")
    # The step runs again with the same idempotency key (a crash after the
    # effect, a redelivered message): every listener answers duplicate.
    connector = connectors.get("event.emit")
    ctx = connectors.Context(
        run_id=run.pk,
        node_id="announce",
        attempt=2,
        config=connector.Config.model_validate(step.input),
        idempotency_key=step.idempotency_key,
        data={"trigger": run.input, "steps": {}},
        now=clock.now(),
    )
    again = connector.execute(ctx).output
    assert {d["status"] for d in again["deliveries"]} == {"duplicate"}
    assert Run.objects.filter(flow__in=[ship, invoice]).count() == 2
    assert DeliveryRecord.objects.filter(flow=paused).count() == 1
    # A new run of the publisher is a new event.
    with eager_celery():
        driver.start_run(flow=publisher, input={"order": "E-3"}, actor="user:olga")
    assert Run.objects.filter(flow__in=[ship, invoice]).count() == 4


def test_a_flow_that_answers_its_own_topic_stops_at_the_hop_limit(olga, eager_celery, settings):
    settings.LEDGERFLOW_EVENT_MAX_HOPS = 3
    echo = triggered_flow(
        olga,
        {"type": "trigger.event", "config": {"topic": "echo"}},
        {
            **emit("echo", payload={"order": "{{ trigger.payload.order }}"}),
            "retry": {"max_attempts": 1},
        },
        slug="echo",
    )
    starter = triggered_flow(olga, {"type": "trigger.manual"}, emit("echo"), slug="starter")
    with eager_celery():
        driver.start_run(flow=starter, input={"order": "loop"}, actor="user:olga")
    runs = list(Run.objects.filter(flow=echo).order_by("pk"))
    assert [r.input["hops"] for r in runs] == [1, 2, 3]
    last = Step.objects.get(run=runs[-1], node_id="announce")
    assert last.status == "dead_lettered" and "hops" in last.error


def test_topics_page_and_flow_page_show_who_publishes_and_who_listens(
    client, olga, rita, choreography
):
    publisher, (ship, _), _, _ = choreography
    page = login(client, rita).get(reverse("triggers:topics")).content.decode()
    assert TOPIC in page
    for name in ("checkout", "ship", "invoice", "loyalty"):
        assert name in page
    flow_page = client.get(reverse("flows:detail", kwargs={"slug": ship.slug})).content.decode()
    assert "Listens to" in flow_page and "checkout" in flow_page.lower()
    publisher_page = client.get(reverse("flows:detail", kwargs={"slug": publisher.slug}))
    assert "Publishes to" in publisher_page.content.decode()


def test_rebuild_restores_subscriptions_and_the_event_ledger(olga, eager_celery, choreography):
    publisher, _, _, _ = choreography
    with eager_celery():
        driver.start_run(flow=publisher, input={"order": "E-4"}, actor="user:olga")

    def snapshot():
        return (
            sorted(Binding.objects.values_list("flow_id", "kind", "topic", "publishes")),
            sorted(Receipt.objects.values_list("flow_id", "source", "key", "run_id", "outcome")),
            sorted(DeliveryRecord.objects.values_list("flow_id", "seq", "outcome", "key")),
        )

    before = snapshot()
    assert len(before[1]) == 3  # ship, invoice started; loyalty refused once
    for model in (Binding, Receipt, DeliveryRecord):
        model.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert snapshot() == before
