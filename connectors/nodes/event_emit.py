"""Emit event: publish a payload to a named topic of the event bus.

The event id is the step's idempotency key, so a retried or re-run step
publishes the same event again, and every subscribing flow starts once.
"""

from typing import Any

from django.conf import settings
from pydantic import Field

from connectors import base
from connectors.nodes.trigger_event import TOPIC
from connectors.triggers import bus


class EmitEventConfig(base.StrictConfig):
    # A plain name, not an expression: the inventory shows who publishes where.
    topic: str = Field(pattern=TOPIC)
    payload: Any = Field(default_factory=dict)


@base.register
class EmitEvent(base.Connector):
    key = "event.emit"
    label = "Emit event"
    category = "Events"
    icon = "send"
    description = (
        "Publishes an event to a named topic; every active flow subscribed to the topic "
        "starts one run for it, exactly once. The event id comes from the step's idempotency "
        "key, so a retry publishes nothing twice."
    )
    Config = EmitEventConfig
    example_config = {"topic": "orders.shipped", "payload": {"order_id": "{{ trigger.order_id }}"}}
    timeout_seconds = 60.0

    def side_effect(self, config: EmitEventConfig) -> base.SideEffect:
        return base.SideEffect.IDEMPOTENT  # subscribers start once per event id

    def execute(self, ctx: base.Context) -> base.Result:
        trigger = ctx.data.get("trigger") or {}
        hops = (trigger.get("hops", 0) if isinstance(trigger, dict) else 0) + 1
        if hops > settings.LEDGERFLOW_EVENT_MAX_HOPS:
            raise base.not_sent(
                f"event chain is {hops} hops long (limit {settings.LEDGERFLOW_EVENT_MAX_HOPS});"
                " flows that answer each other's events may be looping"
            )
        deliveries = bus.publish(
            topic=ctx.config.topic,
            payload=ctx.config.payload,
            event_id=ctx.idempotency_key,
            publisher_run_id=ctx.run_id,
            hops=hops,
        )
        return base.Result(
            output={
                "topic": ctx.config.topic,
                "event_id": ctx.idempotency_key,
                "deliveries": deliveries,
            }
        )
