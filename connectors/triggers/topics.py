"""The event bus inventory: per topic, which flows publish to it and which
listen (the choreography a flow graph alone does not show)."""

from dataclasses import dataclass, field

from connectors.triggers.models import Binding


@dataclass
class Topic:
    name: str
    publishers: list = field(default_factory=list)  # Flow rows
    listeners: list = field(default_factory=list)


def inventory() -> list[Topic]:
    found: dict[str, Topic] = {}
    for binding in Binding.objects.select_related("flow").order_by("flow__name"):
        for name in binding.publishes:
            found.setdefault(name, Topic(name)).publishers.append(binding.flow)
        if binding.kind == "event" and binding.topic:
            found.setdefault(binding.topic, Topic(binding.topic)).listeners.append(binding.flow)
    return [found[name] for name in sorted(found)]


def for_flow(binding: Binding | None) -> dict:
    """The topics a flow touches, with the flows on the other side."""
    if binding is None:
        return {"publishes": [], "listens": None}
    by_name = {topic.name: topic for topic in inventory()}
    return {
        "publishes": [by_name[name] for name in binding.publishes if name in by_name],
        "listens": by_name.get(binding.topic) if binding.kind == "event" else None,
    }
