"""Before and after, for the events that change something in place: an
inventory edit names its changes, and a saved draft or a published version
is compared with the graph the flow held before it."""

import json
from dataclasses import dataclass
from typing import Any

from runs.ground.models import Event

GRAPH_EVENTS = ("flow.draft_saved", "flow.published")


@dataclass(frozen=True)
class Change:
    what: str
    before: str
    after: str


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def field_changes(payload: dict) -> list[Change]:
    """``{"changes": {field: {"from": …, "to": …}}}``, and an owner's move."""
    changes = payload.get("changes")
    if isinstance(changes, dict):
        return [
            Change(name, _text(value.get("from")), _text(value.get("to")))
            for name, value in changes.items()
            if isinstance(value, dict)
        ]
    if "from" in payload and "to" in payload:
        return [Change("owner", _ref(payload["from"]), _ref(payload["to"]))]
    return []


def _ref(ref: Any) -> str:
    if isinstance(ref, dict):
        return str(ref.get("username") or ref.get("name") or ref.get("id"))
    return _text(ref)


def _by_id(graph: Any, key: str) -> dict[str, dict]:
    items = graph.get(key, []) if isinstance(graph, dict) else []
    return {str(item.get("id")): item for item in items if isinstance(item, dict)}


def _edges(graph: Any) -> set[str]:
    items = graph.get("edges", []) if isinstance(graph, dict) else []
    found = set()
    for edge in items:
        if isinstance(edge, dict):
            port = f" ({edge['port']})" if edge.get("port") else ""
            found.add(f"{edge.get('from')} → {edge.get('to')}{port}")
    return found


def graph_changes(before: Any, after: Any) -> list[Change]:
    """Nodes added, removed or changed, and edges added or removed."""
    old, new = _by_id(before, "nodes"), _by_id(after, "nodes")
    changes = [Change(f"node {n}", "—", _text(new[n])) for n in sorted(new.keys() - old.keys())]
    changes += [Change(f"node {n}", _text(old[n]), "—") for n in sorted(old.keys() - new.keys())]
    for node in sorted(old.keys() & new.keys()):
        for key in sorted(old[node].keys() | new[node].keys()):
            if old[node].get(key) != new[node].get(key):
                changes.append(
                    Change(
                        f"node {node} {key}", _text(old[node].get(key)), _text(new[node].get(key))
                    )  # fmt: skip
                )
    old_edges, new_edges = _edges(before), _edges(after)
    changes += [Change("edge", "—", e) for e in sorted(new_edges - old_edges)]
    changes += [Change("edge", e, "—") for e in sorted(old_edges - new_edges)]
    return changes


def previous_graph(event: Event) -> Any:
    """The graph the flow held before ``event``: its last draft or version."""
    earlier = (
        Event.objects.filter(stream=event.stream, seq__lt=event.seq, type__in=GRAPH_EVENTS)
        .order_by("-seq")
        .values_list("payload", flat=True)
        .first()
    )
    return earlier.get("graph") if isinstance(earlier, dict) else None


def changes_of(event: Event) -> list[Change]:
    if event.type in GRAPH_EVENTS:
        return graph_changes(previous_graph(event), event.payload.get("graph"))
    if event.type in ("flow.edited", "team.edited", "flow.owner_changed", "credential.updated"):
        return field_changes(event.payload)
    return []
