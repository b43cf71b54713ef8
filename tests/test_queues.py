"""Queue triggers against the real RabbitMQ on 127.0.0.1: quorum queues with
a delivery limit and dead letters, one run per message id, acknowledgement
after the run's start commits, and the Publish-to-queue connector."""

import json
import uuid

import amqp.exceptions
import kombu
import pytest

from connectors.triggers import queues
from connectors.triggers.models import DeliveryRecord, Receipt
from runs import driver
from runs.models import Run, Step
from tests.engine_helpers import transform
from tests.trigger_helpers import Background, pause, triggered_flow, wait_until

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def rabbit(settings, transactional_db):
    """A unique queue name per test; its queues are deleted afterwards."""
    settings.RABBITMQ_URL = RABBITMQ
    name = f"lf-test-{uuid.uuid4().hex[:12]}"
    yield name
    with kombu.Connection(RABBITMQ) as connection:
        channel = connection.channel()
        for queue in (name, queues.dead_letter_queue(name)):
            channel.queue_delete(queue)


def queue_flow(olga, name: str, slug: str = "orders-in", **config):
    return triggered_flow(
        olga,
        {"type": "trigger.queue", "config": {"queue": name, **config}},
        transform("got", order="{{ trigger.body.order }}"),
        slug=slug,
    )


def consumer():
    return Background(
        lambda stop: queues.QueueConsumer(RABBITMQ, stop=stop, refresh_seconds=0.2).run()
    )


def send(name: str, body, message_id: str | None = None, raw: bytes | None = None) -> None:
    with kombu.Connection(RABBITMQ, transport_options={"confirm_publish": True}) as connection:
        properties = {"message_id": message_id} if message_id else {}
        connection.Producer().publish(
            raw if raw is not None else json.dumps(body),
            exchange="",
            routing_key=name,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            **properties,
        )


def declared(name: str, delivery_limit: int = 5) -> None:
    with kombu.Connection(RABBITMQ) as connection:
        queues.declare(connection.channel(), name, delivery_limit)


def depth(name: str) -> int:
    with kombu.Connection(RABBITMQ) as connection:
        return connection.channel().queue_declare(name, passive=True).message_count


def test_each_message_id_starts_one_run_and_messages_are_acknowledged(olga, rabbit):
    flow = queue_flow(olga, rabbit)
    declared(rabbit)
    send(rabbit, {"order": "Q-1"}, message_id="m-1")
    send(rabbit, {"order": "Q-1 again"}, message_id="m-1")  # a redelivery by the sender
    send(rabbit, {"order": "Q-2"}, message_id="m-2")
    with consumer():
        assert wait_until(lambda: Receipt.objects.filter(flow=flow).count() == 2)
        assert wait_until(lambda: depth(rabbit) == 0)
    runs = Run.objects.filter(flow=flow)
    assert runs.count() == 2
    assert sorted(r.output["got"]["order"] for r in runs) == ["Q-1", "Q-2"]
    assert sorted(r.input["message_id"] for r in runs) == ["m-1", "m-2"]


def test_queues_are_quorum_queues_with_a_dead_letter_queue(olga, rabbit):
    queue_flow(olga, rabbit, delivery_limit=2)
    with consumer():
        assert wait_until(lambda: _exists(rabbit) and _exists(queues.dead_letter_queue(rabbit)))
    # RabbitMQ accepts a declaration only with the arguments the queue was
    # made with: the same quorum arguments pass, a classic queue is refused.
    with kombu.Connection(RABBITMQ) as connection:
        connection.channel().queue_declare(
            rabbit, durable=True, auto_delete=False, arguments=queues.queue_arguments(rabbit, 2)
        )
        with pytest.raises(amqp.exceptions.PreconditionFailed):
            connection.channel().queue_declare(rabbit, durable=True, auto_delete=False)


def _exists(name: str) -> bool:
    try:
        depth(name)
    except Exception:
        return False
    return True


def test_a_poison_message_reaches_the_dead_letter_queue_and_is_recorded(olga, rabbit):
    flow = queue_flow(olga, rabbit, delivery_limit=1)
    declared(rabbit, delivery_limit=1)
    send(rabbit, None, message_id="poison-1", raw=b"this is not json")
    send(rabbit, {"order": "fine"}, message_id="ok-1")
    with consumer():
        assert wait_until(
            lambda: DeliveryRecord.objects.filter(flow=flow, outcome="dead_lettered").exists(),
            timeout=20,
        )
        assert wait_until(lambda: Run.objects.filter(flow=flow).count() == 1)
    record = DeliveryRecord.objects.get(flow=flow, outcome="dead_lettered")
    assert record.key == "poison-1" and record.detail["body"] == "this is not json"
    assert depth(queues.dead_letter_queue(rabbit)) == 0


def test_a_paused_flow_leaves_its_messages_in_the_queue(olga, rabbit):
    flow = pause(queue_flow(olga, rabbit), olga)
    declared(rabbit)
    send(rabbit, {"order": "later"}, message_id="m-p")
    with consumer() as running:
        running.stop.wait(1.0)
    assert not Run.objects.filter(flow=flow).exists()
    assert depth(rabbit) == 1


def test_publish_to_queue_sets_the_message_id_to_the_step_key(olga, rabbit, eager_celery):
    subscriber = queue_flow(olga, rabbit, slug="subscriber")
    declared(rabbit)
    publisher = triggered_flow(
        olga,
        {"type": "trigger.manual"},
        {
            "id": "send",
            "type": "queue.publish",
            "config": {"queue": rabbit, "body": {"order": "{{ trigger.order }}"}},
        },
        slug="publisher",
    )
    with eager_celery():
        run = driver.start_run(flow=publisher, input={"order": "P-1"}, actor="user:olga")
    step = Step.objects.get(run=run, node_id="send")
    assert step.status == "succeeded"
    assert step.output == {"queue": rabbit, "message_id": step.idempotency_key}
    # The same step published again (a retry after a lost confirm) is one run.
    with eager_celery():
        send(rabbit, {"order": "P-1"}, message_id=step.idempotency_key)
    with consumer():
        assert wait_until(lambda: Run.objects.filter(flow=subscriber).exists())
        assert wait_until(lambda: depth(rabbit) == 0)
    started = Run.objects.get(flow=subscriber)
    assert started.input["message_id"] == step.idempotency_key
    assert started.output["got"]["order"] == "P-1"


def test_publishing_to_a_missing_queue_is_a_retryable_failure(olga, rabbit, eager_celery):
    publisher = triggered_flow(
        olga,
        {"type": "trigger.manual"},
        {
            "id": "send",
            "type": "queue.publish",
            "config": {"queue": rabbit + "-missing"},
            "retry": {"max_attempts": 1},
        },
        slug="publisher",
    )
    with eager_celery():
        run = driver.start_run(flow=publisher, input={}, actor="user:olga")
    step = Step.objects.get(run=run, node_id="send")
    assert step.status == "dead_lettered" and "does not exist" in step.error


def test_the_consumer_without_rabbitmq_says_it_is_off_and_idles():
    import os
    import signal
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RABBITMQ_URL"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "consume_queues"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = proc.stdout.readline()
        assert "Queue triggers are off: RABBITMQ_URL is not set" in first_line
        assert proc.poll() is None  # idling, so a process runner keeps the others up
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_a_message_whose_run_cannot_start_is_returned_not_acknowledged(olga, rabbit):
    flow = queue_flow(olga, rabbit)
    declared(rabbit)
    subscription = queues.subscriptions()[rabbit]
    pause(flow, olga)  # after the consumer looked: the start is refused
    send(rabbit, {"order": "held"}, message_id="m-held")
    with kombu.Connection(RABBITMQ) as connection:
        channel = connection.channel()
        message = channel.basic_get(rabbit)
        received = channel.message_to_python(message)
        assert queues.handle(subscription, received) == "requeued"
    assert not Run.objects.filter(flow=flow).exists()
    assert depth(rabbit) == 1


def test_an_unreachable_broker_is_a_retryable_failure(olga, settings, eager_celery):
    from tests.localserver import free_port

    settings.RABBITMQ_URL = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    publisher = triggered_flow(
        olga,
        {"type": "trigger.manual"},
        {
            "id": "send",
            "type": "queue.publish",
            "config": {"queue": "anywhere"},
            "retry": {"max_attempts": 2, "initial_seconds": 60},
        },
        slug="publisher",
    )
    with eager_celery():
        run = driver.start_run(flow=publisher, input={}, actor="user:olga")
    step = Step.objects.get(run=run, node_id="send")
    assert step.status == "retrying" and "publish failed" in step.error
