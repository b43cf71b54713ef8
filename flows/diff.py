"""What publishing changes: the draft against the last published version,
node by node. The editor shows the same diff before publishing
(flows/editor/src/diff.ts); both compare normalised graphs, so a default
filled in by normalisation is not a change."""

from flows import graph as graph_module

# Fields of a node compared one by one; config is compared key by key.
NODE_FIELDS = ("type", "retry", "on_failure", "compensation", "disabled")


def _normal(graph: dict | None) -> dict:
    if not graph:
        return {"nodes": [], "edges": [], "settings": {}}
    return graph_module.normalise(graph)


def _changed_fields(old: dict, new: dict) -> list[str]:
    fields = [f for f in NODE_FIELDS if old.get(f) != new.get(f)]
    old_config, new_config = old.get("config") or {}, new.get("config") or {}
    for key in sorted(set(old_config) | set(new_config)):
        if old_config.get(key) != new_config.get(key):
            fields.append(f"config.{key}")
    return fields


def _edge_key(edge: dict) -> str:
    return f"{edge['from']}:{edge.get('from_port', 'out')}->{edge['to']}"


def graph_diff(old: dict | None, new: dict | None) -> dict:
    """Nodes added, removed and changed (with the changed fields), edges
    added and removed. Positions are layout, not behaviour: not a change."""
    old, new = _normal(old), _normal(new)
    old_nodes = {n["id"]: n for n in old["nodes"]}
    new_nodes = {n["id"]: n for n in new["nodes"]}
    changed = []
    for node_id in sorted(set(old_nodes) & set(new_nodes)):
        fields = _changed_fields(old_nodes[node_id], new_nodes[node_id])
        if fields:
            changed.append({"id": node_id, "fields": fields})
    old_edges = {_edge_key(e) for e in old["edges"]}
    new_edges = {_edge_key(e) for e in new["edges"]}
    return {
        "added": sorted(set(new_nodes) - set(old_nodes)),
        "removed": sorted(set(old_nodes) - set(new_nodes)),
        "changed": changed,
        "edges_added": sorted(new_edges - old_edges),
        "edges_removed": sorted(old_edges - new_edges),
        "settings_changed": old.get("settings") != new.get("settings"),
    }
