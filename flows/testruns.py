"""Test runs of a flow's draft through the real engine.

A test run pins an immutable, unnumbered snapshot of the draft (a
``DraftSnapshot`` keyed by graph hash, recorded as an event on the flow's
stream) and starts an ordinary run on it, marked as a test run. Pinned
outputs (the draft's ``pinned``) are carried into the run as the nodes'
outputs, so those nodes do not run; an event on the run's stream says where
each came from. "Run this step" is a test run of the step and the nodes
before it only, each of those satisfied from pinned data or the last test
run. Nodes that would touch the outside world run only once the caller
confirms them.
"""

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from pydantic import ValidationError

from connectors import base as connectors
from flows import graph as graph_module
from flows import projection
from flows.models import DraftSnapshot, Flow, Status
from flows.services import FlowError, InvalidDraft
from runs import decider, driver
from runs.ground.eventstore import append
from runs.ground.models import Event
from runs.models import Run, Step

PINNED_EVENT = "test.output_pinned"


@dataclass(frozen=True)
class SideEffectNode:
    node: str
    type: str
    side_effect: str


class SideEffectsUnconfirmed(FlowError):
    """The test run would run nodes with side effects; nobody confirmed."""

    def __init__(self, nodes: list[SideEffectNode]):
        self.nodes = nodes
        named = ", ".join(f"{n.node} ({n.type}: {n.side_effect})" for n in nodes)
        super().__init__(
            f"This test run would run nodes with side effects: {named}. "
            "Confirm to run them for real."
        )


class StepInputsMissing(FlowError):
    """A single step cannot run: nodes before it have no output to use."""

    def __init__(self, node: str, missing: list[str]):
        self.missing = missing
        super().__init__(
            f"“{node}” cannot run on its own: " + ", ".join(missing) + " before it "
            f"{'has' if len(missing) == 1 else 'have'} neither pinned data nor an output "
            "from the last test run. Pin their outputs or test-run the whole draft first."
        )


@dataclass(frozen=True)
class Plan:
    """What a test run will run: its graph and the outputs carried into it."""

    graph: dict
    carried: dict[str, dict]
    sources: dict[str, str]  # node -> "pinned" or "test run <id>"


def side_effect_of(node: dict) -> str:
    """The node's side-effect class for its config; a config that does not
    validate yet (an expression where a URL goes) is judged by its
    connector's class, the worst case."""
    connector = connectors.get(node["type"])
    try:
        config = connector.Config.model_validate(node.get("config", {}))
    except ValidationError:
        return str(connector.side_effect_class)
    return str(connector.side_effect(config))


def side_effect_nodes(plan: Plan) -> list[SideEffectNode]:
    """Nodes (and their compensations) the run will execute that touch the
    outside world."""
    found = []
    for node in plan.graph["nodes"]:
        if node["id"] in plan.carried:
            continue
        steps = [(node["id"], node)]
        spec = node.get("compensation")
        if spec and not spec.get("default"):
            steps.append((f"{node['id']} (compensation)", spec))
        for name, step in steps:
            effect = side_effect_of(step)
            if effect != str(connectors.SideEffect.NONE):
                found.append(SideEffectNode(node=name, type=step["type"], side_effect=effect))
    return found


def _port_of(node: dict) -> str:
    return connectors.get(node["type"]).ports_for(node.get("config", {}))[0]


def _ancestors(graph: dict, node: str) -> set[str]:
    preds: dict[str, list[str]] = {}
    for edge in graph["edges"]:
        preds.setdefault(edge["to"], []).append(edge["from"])
    seen: set[str] = set()
    stack = list(preds.get(node, []))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(preds.get(current, []))
    return seen


def last_test_output(flow: Flow, node: str) -> tuple[Step, int] | None:
    """The node's output in the newest test run where it succeeded."""
    step = (
        Step.objects.filter(run__flow=flow, run__is_test=True, node_id=node, status="succeeded")
        .order_by("-run_id")
        .first()
    )
    return (step, step.run_id) if step else None


def plan_test_run(flow: Flow, draft: dict, *, node: str | None = None) -> Plan:
    """The snapshot graph and carried outputs of a test run of ``draft``:
    the whole draft with its pinned nodes carried, or (``node``) that node
    and the nodes before it, each of those carried."""
    try:
        normalised = graph_module.validate(draft)
    except graph_module.InvalidGraph as exc:
        raise InvalidDraft(exc.errors) from None
    pinned = draft.get("pinned") or {}
    nodes = {n["id"]: n for n in normalised["nodes"]}
    if node is None:
        carried = {n: {"output": out, "port": _port_of(nodes[n])} for n, out in pinned.items()}
        return Plan(normalised, carried, dict.fromkeys(carried, "pinned"))
    if node not in nodes:
        raise FlowError(f"The draft has no node “{node}”.")
    before = _ancestors(normalised, node)
    carried, sources, missing = {}, {}, []
    for upstream in sorted(before):
        if upstream in pinned:
            carried[upstream] = {"output": pinned[upstream], "port": _port_of(nodes[upstream])}
            sources[upstream] = "pinned"
        elif connectors.get(nodes[upstream]["type"]).is_trigger:
            continue  # the trigger runs on the sample input, as in every test run
        elif found := last_test_output(flow, upstream):
            step, run_id = found
            carried[upstream] = {"output": step.output, "port": step.port or "out"}
            sources[upstream] = f"test run {run_id}"
        else:
            missing.append(upstream)
    if missing:
        raise StepInputsMissing(node, missing)
    kept = before | {node}
    graph = {
        **normalised,
        "nodes": [n for n in normalised["nodes"] if n["id"] in kept],
        "edges": [e for e in normalised["edges"] if e["from"] in kept and e["to"] in kept],
    }
    graph.pop("notes", None)
    return Plan(graph, carried, sources)


def snapshot_pin(*, flow: Flow, actor: str, graph: dict) -> DraftSnapshot:
    """The snapshot of ``graph``: the existing one of the same hash, or a new
    one recorded on the flow's stream. Call with the flow's row locked, so
    two test runs of one new draft record it once."""
    digest = graph_module.graph_hash(graph)
    existing = DraftSnapshot.objects.filter(flow=flow, graph_hash=digest).first()
    if existing is not None:
        return existing
    payload = {"flow_id": flow.pk, "graph": graph, "graph_hash": digest}
    projection.project(append(flow.stream, projection.SNAPSHOT_EVENT, payload, actor=actor))
    return DraftSnapshot.objects.get(flow=flow, graph_hash=digest)


def test_run_start(
    *,
    flow: Flow,
    actor: str,
    input: Any,
    confirm_side_effects: bool = False,
    node: str | None = None,
) -> Run:
    """Start a test run of the flow's saved draft (or of one of its steps).
    ``actor`` as the log names it: "user:<name>", or the test webhook's."""
    if flow.kind != "ledgerflow":
        raise FlowError("This automation runs outside Ledgerflow; it has no graph to test.")
    if flow.status == Status.RETIRED:
        raise FlowError("A retired flow is not tested.")
    if flow.draft_graph is None:
        raise FlowError("There is no draft to test: save one first.")
    plan = plan_test_run(flow, flow.draft_graph, node=node)
    effects = side_effect_nodes(plan)
    if effects and not confirm_side_effects:
        raise SideEffectsUnconfirmed(effects)
    with transaction.atomic():
        # The lock orders snapshot pins of one flow (see ``snapshot_pin``).
        locked = Flow.objects.select_for_update().get(pk=flow.pk)
        snapshot = snapshot_pin(flow=locked, actor=actor, graph=plan.graph)
        pinned_events = [
            (PINNED_EVENT, {"node": n, "source": source}) for n, source in plan.sources.items()
        ]
        return driver.start_run(
            flow=locked,
            input=input,
            actor=actor,
            test_snapshot=snapshot.graph_hash,
            carried=plan.carried or None,
            extra_events=pinned_events,
        )


def pinned_sources(run: Run) -> dict[str, str]:
    """Which of a test run's outputs came from pinned data or an earlier run."""
    events = Event.objects.filter(stream=run.stream, type=PINNED_EVENT).values_list(
        "payload", flat=True
    )
    return {p["node"]: p["source"] for p in events}


def is_settled(run: Run, steps: list[Step]) -> bool:
    """Nothing more happens by itself: the run finished, or a step waits as
    a dead letter for a person."""
    return run.status in decider.RUN_TERMINAL or any(
        s.status == decider.DEAD_LETTERED for s in steps
    )
