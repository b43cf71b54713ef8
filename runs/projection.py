"""Derive the run projections (runs, steps, timers) from the events alone.

The live rows are written by the driver from the same ``evolve``, and a step
row is first laid out by ``new_step_rows`` for both, so a rebuild yields the
same rows. Not projected: step and timer ids, and the recovery sweep's
re-send bookkeeping (``Step.redispatched_at``, ``Step.redispatches``), which
no event records; a rebuild leaves them at null and 0.
"""

import dataclasses
from collections.abc import Iterable

from flows.models import FlowVersion
from runs import decider
from runs.decider import Graph, RunState, StepState
from runs.graph_facts import build_graph
from runs.ground.models import Event, Stream
from runs.models import Run, Step, Timer

# A step row's columns that hold its state as it is (``port`` is "" for None).
STEP_COLUMNS = [f.name for f in dataclasses.fields(StepState) if f.name not in ("node", "port")]


def new_step_rows(
    run_id: int, graph: Graph, steps: Iterable[str], new: Iterable[str]
) -> list[Step]:
    """Blank rows for the steps ``new`` of a run whose steps are ``steps``
    (in the order the run's state holds them). A step's position is its
    place in the graph's topological order; compensation steps, which are
    outside it, follow in the order the saga scheduled them. The driver
    (live) and the rebuild both lay rows out here, so they cannot differ."""
    order = set(graph.order)
    extra = [node for node in steps if node not in order]
    position = {node: index for index, node in enumerate([*graph.order, *extra])}
    return [
        Step(run_id=run_id, node_id=node, position=position[node],
             connector=graph.nodes[node]["type"])
        for node in new
    ]  # fmt: skip


def _graph_of(graphs: dict, started: dict) -> Graph:
    """The graph a run ran: its published version, or a test run's draft
    snapshot (rebuilt before the runs, from the flows' streams)."""
    from flows.models import DraftSnapshot

    snapshot = started.get("test_snapshot", "")
    key = (started["flow_id"], snapshot or started["version"])
    if key not in graphs:
        if snapshot:
            document = DraftSnapshot.objects.get(flow_id=key[0], graph_hash=snapshot).graph
        else:
            document = FlowVersion.objects.get(flow_id=key[0], number=key[1]).graph
        graphs[key] = build_graph(document)
    return graphs[key]


def rebuild() -> int:
    graphs: dict[tuple[int, int | str], Graph] = {}
    seen = []
    names = Stream.objects.filter(name__startswith="run:").values_list("name", flat=True)
    # By run id: a run's origin (replayed, resumed or parent run) is written
    # before it, so a run recorded before lineages were can inherit its own.
    for name in sorted(names, key=lambda n: int(n.split(":", 1)[1])):
        events = list(Event.objects.filter(stream=name).order_by("seq"))
        if not events or events[0].type != "run.started":
            continue
        run_id = int(name.split(":", 1)[1])
        started = events[0].payload
        graph = _graph_of(graphs, started)
        state = RunState(run_id=run_id)
        for event in events:
            state = decider.evolve(state, (event.type, event.payload), at=event.occurred_at)
        _write(run_id, state, graph, events)
        seen.append(run_id)
    Run.objects.exclude(pk__in=seen).delete()
    return len(seen)


def _inherited_lineage(run_id: int, started: dict) -> int:
    origin = started.get("replay_of") or (started.get("parent") or {}).get("run_id")
    if not origin:
        return run_id
    lineage = Run.objects.filter(pk=origin).values_list("lineage_id", flat=True).first()
    return lineage or origin


def _write(run_id: int, state: RunState, graph: Graph, events: list[Event]) -> None:
    first = events[0]
    parent = first.payload.get("parent") or {}
    Run(
        id=run_id,
        flow_id=first.payload["flow_id"],
        version_number=first.payload["version"],
        is_test=bool(first.payload.get("test_snapshot")),
        test_snapshot=first.payload.get("test_snapshot", ""),
        status=state.status,
        input=state.input,
        output=state.output,
        error=state.error,
        root_run_id=state.root_run_id,
        lineage_id=state.lineage_id or _inherited_lineage(run_id, first.payload),
        replay_of_id=first.payload.get("replay_of"),
        parent_run_id=parent.get("run_id"),
        parent_node=parent.get("node", ""),
        parent_key=parent.get("key", ""),
        started_by=first.actor,
        created_at=first.occurred_at,
        updated_at=state.updated_at or first.occurred_at,
        finished_at=state.finished_at,
        concurrency_key=state.concurrency_key,
        wait_reason=state.wait_reason,
        business_key=state.business_key,
    ).save()
    Step.objects.filter(run_id=run_id).delete()
    Timer.objects.filter(run_id=run_id).delete()
    rows, timers = [], []
    for row in new_step_rows(run_id, graph, state.steps, state.steps):
        step = state.steps[row.node_id]
        for name in STEP_COLUMNS:
            setattr(row, name, getattr(step, name))
        row.port = step.port or ""
        rows.append(row)
        node = row.node_id
        if step.status in (decider.WAITING, decider.RETRYING) and step.due_at is not None:
            kind = "retry" if step.status == decider.RETRYING else step.wait_reason or "timer"
            timers.append(
                Timer(
                    run_id=run_id, node_id=node, attempt=step.attempt, kind=kind, due_at=step.due_at
                )
            )
    Step.objects.bulk_create(rows)
    Timer.objects.bulk_create(timers)
