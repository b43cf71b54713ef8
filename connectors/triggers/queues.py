"""The queue consumer: RabbitMQ queues named by flows' queue triggers.

Each queue is declared as a quorum queue with a delivery limit and a
dead-letter exchange; a message is acknowledged only after its run's start
has committed, so a crash in between redelivers it, and the redelivery is
deduplicated on its message id. A message that keeps failing is moved by
RabbitMQ to ``<queue>.dead`` once it reaches the limit; the consumer records
it there as poison (an event on the flow's trigger stream) and acknowledges.
"""

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass

import amqp.exceptions
import kombu
from django.db import close_old_connections
from kombu import Consumer, Queue
from kombu.exceptions import OperationalError

from connectors.triggers import intake
from connectors.triggers.configs import QueueTriggerConfig
from connectors.triggers.models import Binding
from flows.models import Flow

log = logging.getLogger(__name__)
DEAD_LETTER_EXCHANGE = "ledgerflow.dead-letters"
POISON_BODY_CHARS = 4000


def dead_letter_queue(name: str) -> str:
    return f"{name}.dead"


def queue_arguments(name: str, delivery_limit: int) -> dict:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": name,
    }


def declare(channel, name: str, delivery_limit: int) -> None:
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, "direct", durable=True, auto_delete=False)
    channel.queue_declare(
        dead_letter_queue(name),
        durable=True,
        auto_delete=False,
        arguments={"x-queue-type": "quorum"},
    )
    channel.queue_bind(dead_letter_queue(name), DEAD_LETTER_EXCHANGE, routing_key=name)
    channel.queue_declare(
        name, durable=True, auto_delete=False, arguments=queue_arguments(name, delivery_limit)
    )


@dataclass(frozen=True)
class Subscription:
    queue: str
    delivery_limit: int
    flow_ids: tuple[int, ...]


def subscriptions() -> dict[str, Subscription]:
    """Queues of active flows; a draft or paused flow's queue is not read,
    so its messages wait in RabbitMQ until it is activated or resumed."""
    found: dict[str, list[Binding]] = {}
    for binding in Binding.objects.filter(kind="queue", flow__status="active"):
        found.setdefault(binding.queue, []).append(binding)
    subs = {}
    for name, bindings in found.items():
        limits = [QueueTriggerConfig.model_validate(b.config).delivery_limit for b in bindings]
        subs[name] = Subscription(name, min(limits), tuple(sorted(b.flow_id for b in bindings)))
    return subs


def raw_body(message) -> bytes:
    # py-amqp decodes the body to text when the message names an encoding.
    body = message.body
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def message_key(message) -> str:
    message_id = message.properties.get("message_id")
    if message_id:
        return str(message_id)[:255]
    # Without an id, identical bodies count as one message.
    return "sha256:" + hashlib.sha256(raw_body(message)).hexdigest()


def handle(subscription: Subscription, message) -> str:
    """Start the message's run(s); ack only after they committed."""
    try:
        body = json.loads(raw_body(message))
        if not isinstance(body, dict):
            raise ValueError("the message body is not a JSON object")
        key = message_key(message)
        refused = False
        for flow in Flow.objects.filter(pk__in=subscription.flow_ids):
            outcome = intake.deliver(
                intake.Delivery(
                    flow=flow,
                    source="queue",
                    key=key,
                    actor=f"queue:{subscription.queue}",
                    input={
                        "queue": subscription.queue,
                        "message_id": key,
                        "body": body,
                        "headers": _plain(message.headers),
                    },
                )
            )
            refused = refused or outcome.status == "refused"
    except Exception as exc:  # any failure: RabbitMQ redelivers, then dead-letters
        log.warning("queue %s: message failed, returned to the queue: %s", subscription.queue, exc)
        message.reject(requeue=True)
        return "rejected"
    if refused:
        # Paused since the consumer last looked: leave it for when it resumes.
        message.reject(requeue=True)
        return "requeued"
    message.ack()
    return "acked"


def handle_dead(subscription: Subscription, message) -> str:
    """Record a dead-lettered message on its flows' pages, then let it go."""
    try:
        detail = {
            "queue": subscription.queue,
            "message_id": message.properties.get("message_id") or "",
            "body": raw_body(message)[:POISON_BODY_CHARS].decode("utf-8", errors="replace"),
            "headers": _plain(message.headers),
        }
        for flow in Flow.objects.filter(pk__in=subscription.flow_ids):
            intake.record(
                flow,
                "queue",
                "dead_lettered",
                key=detail["message_id"],
                detail=detail,
                actor=f"queue:{subscription.queue}",
            )
    except Exception as exc:  # kept in the dead-letter queue for the next try
        log.warning("queue %s: could not record a dead letter: %s", subscription.queue, exc)
        message.reject(requeue=True)
        return "rejected"
    message.ack()
    return "recorded"


def _plain(headers) -> dict:
    return json.loads(json.dumps(headers or {}, default=str))


class QueueConsumer:
    """Consumes every subscribed queue on one connection until ``stop``."""

    def __init__(
        self, url: str, *, stop: threading.Event, refresh_seconds: float = 5.0, prefetch: int = 10
    ):
        self.url = url
        self.stop = stop
        self.refresh_seconds = refresh_seconds
        self.prefetch = prefetch
        self.consumers: dict[str, tuple[Subscription, list[Consumer]]] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._run_connected()
            except (OSError, OperationalError, amqp.exceptions.AMQPError) as exc:
                # A broker restart, or a queue declared elsewhere with other
                # arguments: say so and try again, unacknowledged messages
                # are redelivered.
                log.warning("queue consumer stopped (%s); reconnecting in 2 s", exc)
                self.consumers = {}
                self.stop.wait(2)

    def _run_connected(self) -> None:
        with kombu.Connection(self.url, heartbeat=30) as connection:
            channel = connection.channel()
            channel.basic_qos(0, self.prefetch, False)
            refreshed = 0.0
            while not self.stop.is_set():
                if time.monotonic() - refreshed > self.refresh_seconds:
                    close_old_connections()
                    self._reconcile(channel, subscriptions())
                    refreshed = time.monotonic()
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    connection.heartbeat_check()

    def _reconcile(self, channel, wanted: dict[str, Subscription]) -> None:
        for name in list(self.consumers):
            if wanted.get(name) != self.consumers[name][0]:
                for consumer in self.consumers.pop(name)[1]:
                    consumer.cancel()
        for name, sub in wanted.items():
            if name in self.consumers:
                continue
            declare(channel, name, sub.delivery_limit)
            main = Consumer(
                channel,
                queues=[Queue(name, no_declare=True)],
                on_message=lambda m, s=sub: handle(s, m),
            )
            dead = Consumer(
                channel,
                queues=[Queue(dead_letter_queue(name), no_declare=True)],
                on_message=lambda m, s=sub: handle_dead(s, m),
            )
            main.consume()
            dead.consume()
            self.consumers[name] = (sub, [main, dead])
            log.info("consuming queue %s for flows %s", name, sub.flow_ids)
