"""Publish to queue: send a JSON message to a RabbitMQ queue with publisher
confirms; the message id is the step's idempotency key, so the consumer of a
Ledgerflow queue trigger starts one run however often the step re-runs."""

from typing import Any

import amqp.exceptions
import kombu
from django.conf import settings
from kombu.exceptions import OperationalError
from pydantic import Field

from connectors import base
from connectors.triggers.configs import QUEUE


class PublishQueueConfig(base.StrictConfig):
    queue: str = Field(pattern=QUEUE)
    body: Any = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)


@base.register
class PublishQueue(base.Connector):
    key = "queue.publish"
    label = "Publish to queue"
    category = "Events"
    icon = "upload"
    description = (
        "Publishes a message to a RabbitMQ queue with publisher confirms; the message id is "
        "the step's idempotency key, so consumers can drop a redelivered copy."
    )
    Config = PublishQueueConfig
    example_config = {"queue": "orders.fulfil", "body": {"order_id": "{{ trigger.order_id }}"}}
    timeout_seconds = 60.0

    def side_effect(self, config: PublishQueueConfig) -> base.SideEffect:
        return base.SideEffect.IDEMPOTENT  # consumers deduplicate on message_id

    def execute(self, ctx: base.Context) -> base.Result:
        config: PublishQueueConfig = ctx.config
        if not settings.RABBITMQ_URL:
            raise base.not_sent("RABBITMQ_URL is not set: there is no queue broker")
        publishing = False
        try:
            with kombu.Connection(
                settings.RABBITMQ_URL,
                connect_timeout=config.timeout_seconds,
                transport_options={"confirm_publish": True},
            ) as connection:
                # Passive: the consumer owns the queue's arguments (quorum,
                # delivery limit, dead letters); a publisher must not guess them.
                with connection.channel() as probe:
                    probe.queue_declare(queue=config.queue, passive=True)
                producer = connection.Producer()
                # From here a lost connection or a missing confirm leaves the
                # message perhaps delivered (consumers deduplicate on its id).
                publishing = True
                producer.publish(
                    config.body,
                    exchange="",
                    routing_key=config.queue,
                    serializer="json",
                    message_id=ctx.idempotency_key,
                    delivery_mode=2,
                    timeout=config.timeout_seconds,
                    confirm_timeout=config.timeout_seconds,
                )
        except amqp.exceptions.NotFound:
            raise base.not_sent(
                f"queue “{config.queue}” does not exist (is its consumer running?)", retryable=True
            ) from None
        except (OSError, OperationalError, amqp.exceptions.AMQPError) as exc:
            raise base.ConnectorError(
                f"publish failed: {exc}", retryable=True, may_have_been_sent=publishing
            ) from None
        return base.Result(output={"queue": config.queue, "message_id": ctx.idempotency_key})
