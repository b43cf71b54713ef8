"""Sample data for the editor: what a node's expressions would read, so the
panel can list the variables with values and preview a field as it is typed.

One function builds it (``sample_context``): the trigger's input and the
outputs of the steps before the node, each from the draft's pinned data
(``graph["pinned"][<node id>]``) when there is some, else from the latest run
of this flow that has them (``sample_runs`` is the one query, so that test
runs of the draft come first once runs say which they are).
"""

import json
from dataclasses import dataclass, field
from typing import Any

from connectors import base as connectors
from flows.models import Flow
from runs import decider, expressions
from runs.models import Run, Step

# Step states whose output an expression can read (as runs/perform.step_data).
READABLE = (decider.SUCCEEDED, decider.WAITING, decider.COMPENSATING, decider.COMPENSATED)
RUNS_LOOKED_AT = 20
MAX_EXPRESSION_CHARS = 10_000


class PreviewError(ValueError):
    """The request names something the draft does not have; said to the user."""


@dataclass
class Sample:
    data: dict  # {"trigger": ..., "steps": {node: {"output": ...}}, "run": {...}}
    # Where each value came from: "sample" (given), "pinned", "run 12"; or
    # "none" for a step before the node that has no sample yet.
    sources: dict[str, str] = field(default_factory=dict)

    def unsampled(self) -> list[str]:
        return [node for node, source in self.sources.items() if source == "none"]


def sample_runs(flow: Flow):
    """The runs to take sample values from, best first: the newest. When
    runs record whether they were test runs of the draft, those come first."""
    runs = Run.objects.filter(flow=flow)
    if any(f.name == "is_test" for f in Run._meta.get_fields()):
        return runs.order_by("-is_test", "-id")
    return runs.order_by("-id")


def sample_context(
    *, flow: Flow, graph: dict, node: str, trigger_input: Any = None, undo: bool = False
) -> Sample:
    """What an expression at ``node`` of ``graph`` (a draft) would read; with
    ``undo``, what its compensation would, which runs after it and so also
    reads its output."""
    if not isinstance(graph.get("nodes"), list) or not isinstance(graph.get("edges", []), list):
        raise PreviewError("a graph has a list of nodes and a list of edges")
    nodes = {n["id"]: n for n in graph["nodes"] if _is_node(n)}
    if node not in nodes:
        raise PreviewError(f"the draft has no node called “{node}”")
    before = _ancestors(graph, node, itself=undo)
    trigger = next((n for n in before if _is_trigger(nodes[n])), None)
    pinned = graph.get("pinned") if isinstance(graph.get("pinned"), dict) else {}
    recorded, run = _from_latest_run(flow, [n for n in before if n not in pinned])
    sources: dict[str, str] = {}
    steps: dict[str, dict] = {}
    for ancestor in before:
        if ancestor in pinned:
            steps[ancestor], sources[ancestor] = {"output": pinned[ancestor]}, "pinned"
        elif ancestor in recorded:
            steps[ancestor], sources[ancestor] = {"output": recorded[ancestor]}, f"run {run.pk}"
        else:
            sources[ancestor] = "none"
    if trigger_input is not None:
        trigger_data, sources["trigger"] = trigger_input, "sample"
    elif trigger is not None and trigger in steps:
        trigger_data, sources["trigger"] = steps[trigger]["output"], sources[trigger]
    elif run is not None:
        trigger_data, sources["trigger"] = run.input, f"run {run.pk}"
    else:
        trigger_data, sources["trigger"] = {}, "none"
    if trigger is not None:
        # The trigger is a step too; its output is what started the run.
        steps[trigger], sources[trigger] = {"output": trigger_data}, sources["trigger"]
    run_ids = {"id": run.pk, "root_id": run.root_run_id} if run else {"id": 0, "root_id": 0}
    data = {"trigger": trigger_data, "steps": steps, "run": run_ids,
            "last_success": run.last_success if run else None}  # fmt: skip
    return Sample(data=data, sources=sources)


@dataclass
class Preview:
    value: Any = None
    error: str | None = None


def preview(sample: Sample, expression: str) -> Preview:
    """Render ``expression`` as the engine would (the same sandbox and CPU
    budget) against the sample; an error in words, never an exception."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        return Preview(error=f"an expression is at most {MAX_EXPRESSION_CHARS} characters")
    waiting = [t for t, _ in expressions.step_references(expression) if t in sample.unsampled()]
    if waiting:
        return Preview(error=f"no sample of steps.{waiting[0]} yet: run a test, or pin its output")
    try:
        value = expressions.render(expression, sample.data)
    except expressions.ExpressionError as exc:
        return Preview(error=str(exc))
    return Preview(value=_plain(value))


def field_text(graph: dict, node: str, path: str) -> str:
    """The text at ``path`` ("config.fields.amount", "compensation.config.url")
    of a node in the draft."""
    value: Any = next(n for n in graph["nodes"] if _is_node(n) and n["id"] == node)
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise PreviewError(f"node “{node}” has no field {path}")
    if not isinstance(value, str):
        raise PreviewError(f"field {path} of node “{node}” is not text")
    return value


def _plain(value: Any) -> Any:
    """JSON for the answer: a value an expression built that JSON cannot
    carry (a range, say) is shown as its text."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return str(value)


def _ancestors(graph: dict, node: str, *, itself: bool) -> list[str]:
    """The nodes on some path into ``node``, in the draft's node order."""
    incoming: dict[str, list[str]] = {}
    for edge in graph.get("edges", []):
        if (
            isinstance(edge, dict)
            and isinstance(edge.get("from"), str)
            and isinstance(edge.get("to"), str)
        ):
            incoming.setdefault(edge["to"], []).append(edge["from"])
    seen: set[str] = set()
    stack = [node]
    while stack:
        for source in incoming.get(stack.pop(), []):
            if source not in seen:
                seen.add(source)
                stack.append(source)
    if itself:
        seen.add(node)
    else:
        seen.discard(node)
    return [n["id"] for n in graph["nodes"] if _is_node(n) and n["id"] in seen]


def _is_node(node: Any) -> bool:
    """A draft may be incomplete; what is not even a node is left out."""
    return isinstance(node, dict) and isinstance(node.get("id"), str)


def _is_trigger(node: dict) -> bool:
    if not isinstance(node.get("type"), str):
        return False
    try:
        return connectors.get(node["type"]).is_trigger
    except connectors.UnknownConnector:
        return False


def _from_latest_run(flow: Flow, wanted: list[str]) -> tuple[dict[str, Any], Run | None]:
    """Outputs of ``wanted`` steps from one run, so the values belong
    together: the best run that has all of them, else the best run at all."""
    runs = list(sample_runs(flow)[:RUNS_LOOKED_AT])
    if not runs:
        return {}, None
    outputs: dict[int, dict[str, Any]] = {run.pk: {} for run in runs}
    rows = Step.objects.filter(run__in=runs, node_id__in=wanted, status__in=READABLE)
    for run_id, node_id, output in rows.values_list("run_id", "node_id", "output"):
        outputs[run_id][node_id] = output
    complete = next((run for run in runs if len(outputs[run.pk]) == len(set(wanted))), None)
    chosen = complete or runs[0]
    return outputs[chosen.pk], chosen
