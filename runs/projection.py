"""Derive the run projections (runs, steps, timers) from the events alone.

The live rows are written by the driver from the same ``evolve``, and the
step and timer rows of both by one writer (``runs/rows.py``), so a rebuild
yields the same rows. Not projected: step and timer ids, and the recovery sweep's
re-send bookkeeping (``Step.redispatched_at``, ``Step.redispatches``), which
no event records; a rebuild leaves them at null and 0.
"""

from flows.models import FlowVersion
from runs import decider, rows
from runs.decider import Graph, RunState
from runs.graph_facts import build_graph
from runs.ground.models import Event, Stream
from runs.models import Run, Step, Timer


def _graph_of(graphs: dict, started: dict, version: int) -> Graph:
    """The graph a run ran: the published version it follows (the last a
    ``run.migrated`` moved it to, else the one it started on), or a test
    run's draft snapshot (rebuilt before the runs, from the flows' streams)."""
    from flows.models import DraftSnapshot

    snapshot = started.get("test_snapshot", "")
    key = (started["flow_id"], snapshot or version)
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
        state = RunState(run_id=run_id)
        for event in events:
            state = decider.evolve(state, (event.type, event.payload), at=event.occurred_at)
        graph = _graph_of(graphs, started, state.version_number)
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
        version_number=state.version_number,
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
        last_success=state.last_success,
    ).save()
    Step.objects.filter(run_id=run_id).delete()
    Timer.objects.filter(run_id=run_id).delete()
    rows.write_steps(run_id, graph, RunState(run_id=run_id), state)
