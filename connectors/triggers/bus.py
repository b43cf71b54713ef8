"""The event bus: a published event starts one run of every flow that
listens to its topic, exactly once per (event, flow), because each start
goes through the dedup ledger keyed by the event id."""

from typing import Any

from connectors.triggers import intake
from connectors.triggers.models import Binding


def publish(
    *, topic: str, payload: Any, event_id: str, publisher_run_id: int | None, hops: int = 1
) -> list[dict]:
    """Deliver to every listening flow (retired ones are gone from the bus;
    paused ones record the event as refused, once). Safe to call again with
    the same event id: flows that already started it answer duplicate."""
    listeners = (
        Binding.objects.filter(kind="event", topic=topic)
        .exclude(flow__status="retired")
        .select_related("flow")
        .order_by("flow_id")
    )
    deliveries = []
    for binding in listeners:
        outcome = intake.deliver(
            intake.Delivery(
                flow=binding.flow,
                source="event",
                key=event_id,
                actor=f"topic:{topic}",
                final_refusal=True,
                input={
                    "topic": topic,
                    "event_id": event_id,
                    "payload": payload,
                    "published_by_run": publisher_run_id,
                    "hops": hops,
                },
                detail={"topic": topic},
            )
        )
        deliveries.append(
            {"flow": binding.flow.slug, "status": outcome.status, "run_id": outcome.run_id}
        )
    return deliveries
