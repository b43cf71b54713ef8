"""Which trigger each flow's newest published version has, and its webhook
token. Rows are written by ``apply`` from flow events, live (``project``, a
projector of flow events registered in TriggersConfig) and in a rebuild.
The projector also issues a webhook flow's first token when its version is
published; ``rotate_token`` records a new one.

The flows app records its facts and knows nothing of triggers: bindings
follow the flow's events, and write the token events to the flow's stream
themselves, through the ground layer.
"""

import secrets
from collections.abc import Sequence

from django.db import transaction

from connectors import base as connectors
from connectors.triggers.models import Binding
from flows.services import FlowError, actor_of
from runs.ground import projectors
from runs.ground.eventstore import append
from runs.ground.models import Event

KINDS = {
    "trigger.webhook": "webhook",
    "trigger.schedule": "schedule",
    "trigger.event": "event",
    "trigger.queue": "queue",
    "trigger.manual": "manual",
}
TOKEN_EVENTS = ("flow.webhook_token_issued", "flow.webhook_token_rotated")


def describe(graph: dict) -> dict:
    """The binding's facts from a (normalised, published) graph."""
    # A rebuild reads every published graph, some naming a connector that is
    # not installed here (a demo one); no trigger is one of those.
    trigger = next(
        node
        for node in graph["nodes"]
        if connectors.installed(node["type"]) and connectors.get(node["type"]).is_trigger
    )
    config = trigger.get("config", {})
    publishes = sorted({n["config"]["topic"] for n in graph["nodes"] if n["type"] == "event.emit"})
    respond = [n["id"] for n in graph["nodes"] if n["type"] == "webhook.respond"]
    return {
        "kind": KINDS.get(trigger["type"], trigger["type"]),
        "node_id": trigger["id"],
        "config": config,
        "topic": config.get("topic", "") if trigger["type"] == "trigger.event" else "",
        "queue": config.get("queue", "") if trigger["type"] == "trigger.queue" else "",
        "publishes": publishes,
        "respond_node": respond[0] if respond else "",
    }


def apply(event: Event, binding: Binding | None = None) -> Binding | None:
    """Fold one flow event into the flow's binding (None: not a trigger fact).

    ``binding`` is the row so far in a rebuild; live, it is read here."""
    if event.type != "flow.published" and event.type not in TOKEN_EVENTS:
        return binding
    flow_id = event.payload["flow_id"]
    if binding is None:
        binding = Binding.objects.filter(flow_id=flow_id).first()
    if event.type == "flow.published":
        facts = describe(event.payload["graph"])
        token = binding.token if binding else None
        binding = Binding(
            flow_id=flow_id,
            version_number=event.payload["number"],
            since=event.occurred_at,
            token=token,
            **facts,
        )
    elif binding is not None:
        binding.token = event.payload["token"]
    return binding


def project(events: Sequence[Event]) -> None:
    """Live: write the binding in the transaction that appended the events."""
    for event in events:
        binding = apply(event)
        if binding is None:
            continue
        binding.save()
        if event.type == "flow.published" and binding.kind == "webhook" and not binding.token:
            # A webhook flow gets its URL when first published with that trigger.
            _token_event(binding.flow_id, "flow.webhook_token_issued", event.actor)


@transaction.atomic
def rotate_token(flow, actor) -> Binding:
    """A new URL; the old one stops working in the same commit."""
    binding = Binding.objects.filter(flow=flow).first()
    if binding is None or binding.kind != "webhook":
        raise FlowError("This flow's published version has no webhook trigger.")
    _token_event(flow.pk, "flow.webhook_token_rotated", actor_of(actor))
    return Binding.objects.get(flow=flow)


def _token_event(flow_id: int, kind: str, actor: str) -> None:
    payload = {"flow_id": flow_id, "token": secrets.token_urlsafe(32)}
    projectors.project([append(f"flow:{flow_id}", kind, payload, actor=actor)])
