"""What a read-only diagram draws (flows/editor/src/diagram.tsx): a graph,
cut down to what can be drawn, and the catalogue entries of the connectors
its nodes use (labels, ports)."""

from typing import Any

from connectors.base import all_connectors, describe
from flows.models import Flow, Kind


def _point(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("x"), int | float)
        and isinstance(value.get("y"), int | float)
    )


def _drawable_node(node: Any) -> dict | None:
    if not isinstance(node, dict):
        return None
    if not isinstance(node.get("id"), str) or not isinstance(node.get("type"), str):
        return None
    node = dict(node)
    if not _point(node.get("position")):
        node.pop("position", None)  # the diagram places it
    if not isinstance(node.get("config"), dict):
        node["config"] = {}
    return node


def drawable(graph: dict) -> dict:
    """The nodes, edges and notes of ``graph`` that can be drawn. Published
    versions are whole; a draft may be anything a save accepted, and a
    malformed part of it is left out rather than breaking the page."""
    nodes = [n for n in map(_drawable_node, _list(graph, "nodes")) if n]
    ids = {n["id"] for n in nodes}
    edges = [
        {"from": e["from"], "to": e["to"], "from_port": str(e.get("from_port") or "out")}
        for e in _list(graph, "edges")
        if isinstance(e, dict) and e.get("from") in ids and e.get("to") in ids
    ]
    notes = [
        {"id": n["id"], "text": n["text"], "position": n["position"]}
        for n in _list(graph, "notes")
        if isinstance(n, dict)
        and isinstance(n.get("id"), str)
        and isinstance(n.get("text"), str)
        and _point(n.get("position"))
    ]
    return {"nodes": nodes, "edges": edges, "notes": notes}


def _list(graph: dict, key: str) -> list:
    value = graph.get(key) if isinstance(graph, dict) else None
    return value if isinstance(value, list) else []


def connectors_of(graph: dict) -> list[dict]:
    """The catalogue entries of the connectors ``graph`` uses; an unknown
    type is left out and its node says so."""
    registry = all_connectors()
    types = sorted({node["type"] for node in graph["nodes"]} & registry.keys())
    return [describe(registry[key]) for key in types]


def diagram_config(graph: dict) -> dict:
    shown = drawable(graph)
    return {"graph": shown, "connectors": connectors_of(shown)}


def flow_diagram(flow: Flow, *, may_edit: bool) -> dict | None:
    """The flow page's diagram: the published version, or, before the first
    publication, the draft for those who may edit it. None for automations
    that run elsewhere."""
    if flow.kind != Kind.LEDGERFLOW:
        return None
    version = flow.versions.filter(number=flow.published_version).first()
    if version is not None:
        return {"version": version.number, "draft": False, "config": diagram_config(version.graph)}
    draft = drawable(flow.draft_graph) if may_edit and flow.draft_graph else None
    if draft and draft["nodes"]:
        return {"version": 0, "draft": True, "config": diagram_config(draft)}
    return {"version": 0, "draft": False, "config": None}
