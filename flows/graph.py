"""A flow's graph: a JSON document of nodes and edges, its schema, and the
semantic checks that make a draft publishable.

Every message names the node and the field, because the person reading it is
looking at an editor, not a stack trace.
"""

import graphlib
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import jsonschema
from pydantic import ValidationError

from connectors import base as connectors
from flows import secrets
from runs import expression_help, expressions
from runs.decider import topological_order
from runs.ground import plainjson

DEFAULT_RETRY = {
    "max_attempts": 3,
    "initial_seconds": 1.0,
    "multiplier": 2.0,
    "max_seconds": 300.0,
    "jitter": 0.2,
}

NODE_ID = r"^[a-z][a-z0-9_]{0,62}$"


def connector_types(document: dict) -> frozenset[str]:
    """Every connector a stored graph names: its nodes' and their
    compensations'."""
    types = set()
    for node in document.get("nodes", []):
        types.add(node.get("type"))
        compensation = node.get("compensation")
        if isinstance(compensation, dict):
            types.add(compensation.get("type"))
    return frozenset(key for key in types if isinstance(key, str))


GRAPH_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {
        "position": {
            "type": "object",
            "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
            "additionalProperties": False,
        },
        "retry": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": 50},
                "initial_seconds": {"type": "number", "minimum": 0, "maximum": 3600},
                "multiplier": {"type": "number", "minimum": 1, "maximum": 10},
                "max_seconds": {"type": "number", "minimum": 0, "maximum": 86400},
                "jitter": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
    },
    "type": "object",
    "required": ["nodes", "edges"],
    "additionalProperties": False,
    "properties": {
        "nodes": {
            "type": "array",
            "minItems": 1,
            "maxItems": 500,
            "items": {
                "type": "object",
                "required": ["id", "type"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "pattern": NODE_ID},
                    "type": {"type": "string", "minLength": 1},
                    "config": {"type": "object"},
                    "retry": {"$ref": "#/$defs/retry"},
                    # When the step fails for good: wait as a dead letter for a
                    # person (the default), or fail the run (and compensate).
                    "on_failure": {"enum": ["dead_letter", "fail_run"]},
                    # "default": the connector's own undo on the node's config;
                    # or another connector with its own config.
                    "compensation": {
                        "oneOf": [
                            {"const": "default"},
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "type": {"type": "string", "minLength": 1},
                                    "config": {"type": "object"},
                                    "default": {"const": True},
                                    "retry": {"$ref": "#/$defs/retry"},
                                },
                                "oneOf": [
                                    {"required": ["type"], "not": {"required": ["default"]}},
                                    {"required": ["default"], "not": {"required": ["type"]}},
                                ],
                            },
                        ]
                    },
                    "position": {"$ref": "#/$defs/position"},
                    # Kept in the flow but not run: its input passes through.
                    "disabled": {"type": "boolean"},
                },
            },
        },
        "edges": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["from", "to"],
                "additionalProperties": False,
                "properties": {
                    "from": {"type": "string"},
                    "to": {"type": "string"},
                    "from_port": {"type": "string"},
                },
            },
        },
        # Sticky notes: documentation on the editor's canvas; never run.
        "notes": {
            "type": "array",
            "maxItems": 200,
            "items": {
                "type": "object",
                "required": ["id", "text"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "minLength": 1, "maxLength": 100},
                    "text": {"type": "string", "maxLength": 10000},
                    "position": {"$ref": "#/$defs/position"},
                },
            },
        },
        # Sample outputs pinned by the operator, {"<node id>": <json>}: a test
        # run uses them instead of running the node. Drafts only: publishing
        # (``normalise``) drops them, so production runs never see them.
        "pinned": {
            "type": "object",
            "maxProperties": 500,
            "propertyNames": {"pattern": NODE_ID},
        },
        "settings": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "compensate_on_cancel": {"type": "boolean"},
                # What an approval does when nobody decides after its last SLA,
                # unless the node's escalation says otherwise.
                "approval_breach_policy": {"enum": ["keep_waiting", "auto_reject", "dead_letter"]},
                # Runs whose trigger renders the same key run one at a time.
                "concurrency_key": {"type": "string", "minLength": 1, "maxLength": 500},
                # What people look a run up by (an order id), from the trigger.
                "business_key": {"type": "string", "minLength": 1, "maxLength": 500},
            },
        },
    },
}

_validator = jsonschema.Draft202012Validator(GRAPH_SCHEMA)


@dataclass(frozen=True)
class GraphError:
    message: str
    node: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = []
        if self.node:
            where.append(f"node “{self.node}”")
        if self.field:
            where.append(f"field “{self.field}”")
        return (", ".join(where) + ": " if where else "") + self.message


class InvalidGraph(ValueError):
    def __init__(self, errors: list[GraphError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


def normalise(graph: dict, *, sort_edges: bool = True) -> dict:
    """Fill defaults so that equal graphs have equal canonical text."""
    nodes = []
    for node in graph["nodes"]:
        normal = {
            "id": node["id"],
            "type": node["type"],
            "config": node.get("config", {}),
            "retry": {**DEFAULT_RETRY, **node.get("retry", {})},
            "position": node.get("position", {"x": 0, "y": 0}),
        }
        if node.get("on_failure", "dead_letter") != "dead_letter":
            normal["on_failure"] = node["on_failure"]
        if node.get("disabled"):
            # Only when disabled, so graphs without it hash as before.
            normal["disabled"] = True
        if node.get("compensation"):
            spec = node["compensation"]
            spec = {"default": True} if spec == "default" else spec
            retry = {**DEFAULT_RETRY, "max_attempts": 10, **spec.get("retry", {})}
            if spec.get("default"):
                normal["compensation"] = {"default": True, "retry": retry}
            else:
                normal["compensation"] = {
                    "type": spec["type"],
                    "config": spec.get("config", {}),
                    "retry": retry,
                }
        nodes.append(normal)
    edges = [
        {"from": e["from"], "to": e["to"], "from_port": e.get("from_port", "out")}
        for e in graph["edges"]
    ]
    if sort_edges:
        edges.sort(key=lambda e: (e["from"], e["from_port"], e["to"]))
    settings = {"compensate_on_cancel": True, **graph.get("settings", {})}
    normal = {"nodes": nodes, "edges": edges, "settings": settings}
    if graph.get("notes"):
        # Only when there are notes, so graphs without them hash as before.
        normal["notes"] = [
            {"id": n["id"], "text": n["text"], "position": n.get("position", {"x": 0, "y": 0})}
            for n in graph["notes"]
        ]
    return normal


def canonical_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def graph_hash(graph: dict) -> str:
    return hashlib.sha256(canonical_text(graph).encode()).hexdigest()


def validate(graph: Any) -> dict:
    """Return the normalised graph, or raise InvalidGraph with every problem."""
    if not isinstance(graph, dict):
        raise InvalidGraph([GraphError("the graph must be a JSON object with nodes and edges")])
    schema_errors = sorted(_validator.iter_errors(graph), key=lambda e: list(e.absolute_path))
    if schema_errors:
        raise InvalidGraph([_schema_error(graph, e) for e in schema_errors[:20]])
    pinned = graph.get("pinned")
    # Checked in the author's edge order, so "edges[2]" means their third edge.
    graph = normalise(graph, sort_edges=False)
    errors: list[GraphError] = []
    nodes: dict[str, dict] = {}
    for node in graph["nodes"]:
        if node["id"] in nodes:
            errors.append(GraphError("two nodes have this id", node=node["id"], field="id"))
        nodes[node["id"]] = node
    impls = {}
    for node_id, node in nodes.items():
        try:
            impls[node_id] = connectors.get(node["type"])
        except connectors.UnknownConnector:
            errors.append(
                GraphError(f"unknown connector type “{node['type']}”", node=node_id, field="type")
            )
    triggers = [n for n, impl in impls.items() if impl.is_trigger]
    if len(triggers) != 1:
        errors.append(GraphError(f"a flow needs exactly one trigger, this one has {len(triggers)}"))
    errors += _edge_errors(graph["edges"], nodes, impls)
    if errors:
        raise InvalidGraph(errors)

    preds = {n: [] for n in nodes}
    succs = {n: [] for n in nodes}
    for edge in graph["edges"]:
        preds[edge["to"]].append(edge["from"])
        succs[edge["from"]].append(edge["to"])
    try:
        order = topological_order(nodes, graph["edges"])
    except graphlib.CycleError as exc:
        cycle = sorted(set(exc.args[1]))
        raise InvalidGraph([GraphError("these nodes form a cycle: " + ", ".join(cycle))]) from None
    trigger = triggers[0]
    errors += _disabled_errors(nodes, preds, trigger)
    reachable = _reachable(trigger, succs)
    for node_id in nodes:
        if node_id not in reachable:
            errors.append(GraphError("cannot be reached from the trigger", node=node_id))
    dominators = _dominators(order, preds, trigger)
    reach = _Reach(order=order, dominators=dominators, ancestors=_ancestors(order, preds))
    for node_id, node in nodes.items():
        errors += _config_errors(node_id, node, impls[node_id], reach, nodes)
        if node.get("compensation", {}).get("default"):
            if not impls[node_id].has_compensate():
                errors.append(GraphError(
                    f"{node['type']} has no undo of its own; name a compensating connector",
                    node=node_id, field="compensation",
                ))  # fmt: skip
        elif "compensation" in node:
            errors += _compensation_errors(node_id, node["compensation"], reach, nodes)
    for name in ("concurrency_key", "business_key"):
        errors += _trigger_only_errors(graph["settings"].get(name), f"settings.{name}")
    errors += secret_errors(graph)
    errors += pinned_errors(pinned, nodes)
    if errors:
        raise InvalidGraph(errors)
    return normalise(graph)


def pinned_errors(pinned: Any, nodes: dict) -> list[GraphError]:
    """Pinned outputs name nodes of the graph and are plain JSON the event
    log can store (a test run records them as the nodes' outputs)."""
    errors = []
    for node_id, output in (pinned or {}).items():
        if node_id not in nodes:
            errors.append(
                GraphError("pinned data names no node of this graph", field=f"pinned.{node_id}")
            )
            continue
        problem = plainjson.problem(output)
        if problem:
            errors.append(GraphError(f"pinned data: {problem}", node=node_id, field="pinned"))
    return errors


def secret_errors(graph: Any) -> list[GraphError]:
    """A literal secret anywhere in a node's config or compensation."""
    return [
        GraphError(secrets.ADVICE, node=node, field=path)
        for node, path in secrets.graph_secret_paths(graph)
    ]


def _disabled_errors(nodes: dict, preds: dict, trigger: str) -> list[GraphError]:
    """A disabled node passes on what flowed into it, so it needs exactly one
    input: with several, which one passes would be a guess (merging them is
    what an enabled merge node is for). A disabled trigger would start
    nothing."""
    errors = []
    for node_id, node in nodes.items():
        if not node.get("disabled"):
            continue
        if node_id == trigger:
            errors.append(GraphError(
                "a flow needs an enabled trigger; enable this one", node=node_id, field="disabled",
            ))  # fmt: skip
        elif len(preds[node_id]) > 1:
            errors.append(GraphError(
                f"a disabled node passes its one input through, and this one has "
                f"{len(preds[node_id])} ({', '.join(preds[node_id])}); enable it, "
                "or put a merge before it",
                node=node_id, field="disabled",
            ))  # fmt: skip
    return errors


def _trigger_only_errors(template: str | None, field: str) -> list[GraphError]:
    """Keys (concurrency, business) are computed when a run arrives, before
    any step: they may read only the trigger."""
    if template is None:
        return []
    syntax = expressions.check_syntax(template)
    if syntax:
        return [GraphError(f"expression syntax: {syntax}", field=field)]
    if expressions.step_references(template):
        return [GraphError("may read only the trigger ({{ trigger… }}), not steps", field=field)]
    return []


def _schema_error(graph: dict, error: jsonschema.ValidationError) -> GraphError:
    path = list(error.absolute_path)
    node = None
    if len(path) >= 2 and path[0] == "nodes" and isinstance(path[1], int):
        candidate = graph["nodes"][path[1]]
        node = candidate.get("id") if isinstance(candidate, dict) else None
        node = node if isinstance(node, str) else f"#{path[1] + 1}"
        path = path[2:]
    elif len(path) >= 2 and path[0] == "edges":
        path = [f"edges[{path[1]}]", *path[2:]]
    message = error.message
    if error.validator == "oneOf" and path and path[-1] in ONE_OF_HINTS:
        # "is not valid under any of the given schemas" helps nobody.
        message = ONE_OF_HINTS[path[-1]]
    return GraphError(message, node=node, field=".".join(str(p) for p in path) or None)


ONE_OF_HINTS = {
    "compensation": '"default" (the connector\'s own undo), or an object with the '
    'compensating connector\'s "type" and its "config"',
}


def _edge_errors(edges: list[dict], nodes: dict, impls: dict) -> list[GraphError]:
    errors = []
    seen = set()
    for index, edge in enumerate(edges):
        label = f"edges[{index}]"
        for end in ("from", "to"):
            if edge[end] not in nodes:
                errors.append(
                    GraphError(f"{end} “{edge[end]}” is not a node (dangling edge)", field=label)
                )
        if edge["from"] not in nodes or edge["to"] not in nodes:
            continue
        if edge["from"] == edge["to"]:
            errors.append(GraphError("an edge cannot loop to its own node", node=edge["to"]))
        source = impls.get(edge["from"])
        ports = source.ports_for(nodes[edge["from"]]["config"]) if source is not None else ()
        if source is not None and edge["from_port"] not in ports:
            errors.append(
                GraphError(
                    f"has no port “{edge['from_port']}” (ports: {', '.join(ports)})",
                    node=edge["from"],
                    field=label,
                )
            )
        target = impls.get(edge["to"])
        if target is not None and target.is_trigger:
            errors.append(GraphError("a trigger cannot have incoming edges", node=edge["to"]))
        key = (edge["from"], edge["from_port"], edge["to"])
        if key in seen:
            errors.append(GraphError("duplicate edge", node=edge["from"], field=label))
        seen.add(key)
    return errors


def _reachable(start: str, succs: dict) -> set[str]:
    seen, stack = {start}, [start]
    while stack:
        for nxt in succs[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _dominators(order: list[str], preds: dict, trigger: str) -> dict[str, set[str]]:
    """Nodes that lie on every path from the trigger to each node."""
    dominators: dict[str, set[str]] = {}
    for node in order:
        incoming = [dominators[p] for p in preds[node] if p in dominators]
        if node == trigger or not incoming:
            dominators[node] = {node}
        else:
            dominators[node] = set.intersection(*incoming) | {node}
    return dominators


def _ancestors(order: list[str], preds: dict) -> dict[str, set[str]]:
    """Nodes on some path from the trigger to each node."""
    ancestors: dict[str, set[str]] = {}
    for node in order:
        ancestors[node] = set().union(*([ancestors[p] | {p} for p in preds[node]] or [set()]))
    return ancestors


@dataclass(frozen=True)
class _Reach:
    """Which steps a node's expressions may read."""

    order: list[str]
    dominators: dict[str, set[str]]
    ancestors: dict[str, set[str]]

    def earlier(self, node_id: str, *, itself: bool) -> list[str]:
        """Steps that run before it on every path, in the flow's order."""
        before = self.dominators[node_id] - (set() if itself else {node_id})
        return [n for n in self.order if n in before]


def _compensation_errors(node_id, spec, reach: _Reach, nodes) -> list[GraphError]:
    """The undo runs after its node succeeded, so it may read that node's
    output as well as anything that ran before it."""
    try:
        impl = connectors.get(spec["type"])
    except connectors.UnknownConnector:
        return [GraphError(f"unknown connector type “{spec['type']}”", node=node_id,
                           field="compensation.type")]  # fmt: skip
    if impl.is_trigger:
        return [GraphError("a trigger cannot compensate", node=node_id, field="compensation.type")]
    errors = _config_errors(node_id, spec, impl, reach, nodes, field_prefix="compensation.")
    return errors


def _config_errors(node_id, node, impl, reach: _Reach, nodes, field_prefix="") -> list[GraphError]:
    errors = []
    config = node["config"]
    try:
        impl.Config.model_validate(config)
    except ValidationError as exc:
        for problem in exc.errors():
            field = field_prefix + ".".join(str(p) for p in ("config", *problem["loc"]))
            errors.append(GraphError(problem["msg"], node=node_id, field=field))
    for field in impl.credential_fields:
        if expressions.has_expression(config.get(field)):
            # Run data must not choose whose secret a step sends.
            errors.append(GraphError(
                "name the credential itself; it cannot be computed from the run's data",
                node=node_id, field=f"{field_prefix}config.{field}",
            ))  # fmt: skip
    syntax = expressions.check_syntax(config)
    if syntax:
        errors.append(
            GraphError(f"expression syntax: {syntax}", node=node_id, field=field_prefix + "config")
        )
        return errors
    # The undo runs after its node succeeded, so it may read that node too.
    earlier = reach.earlier(node_id, itself=bool(field_prefix))
    for target, defaulted in expressions.step_references(config):
        message = _reference_problem(node_id, target, defaulted, earlier, reach, nodes)
        if message and message not in [e.message for e in errors]:
            errors.append(GraphError(message, node=node_id))
    return errors


def _reference_problem(node_id, target, defaulted, earlier, reach: _Reach, nodes) -> str | None:
    """The same words as a failed render at run time (runs/expression_help.py)."""
    if target in earlier or (defaulted and target in nodes):
        return None
    if target not in nodes:
        return expression_help.missing_step(target, earlier) + f"; no node is called {target}"
    if target == node_id:
        return f"steps.{target} is this node itself, which has no output yet"
    if target in reach.ancestors[node_id]:
        return (
            f"steps.{target} does not run before this node on every path (earlier steps: "
            f"{', '.join(earlier) or 'none'}); give a default, e.g. "
            "{{ steps." + target + ".output.x | default(none) }}"
        )
    return expression_help.missing_step(target, earlier)
