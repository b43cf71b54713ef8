"""Derive the run projections (runs, steps, timers) from the events alone.

The live rows are written by the driver from the same ``evolve``, so a
rebuild yields the same rows (step and timer ids aside).
"""

from flows.models import FlowVersion
from runs import decider
from runs.decider import Graph, RunState
from runs.models import Event, Run, Step, Stream, Timer


def rebuild() -> int:
    graphs: dict[tuple[int, int], Graph] = {}
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
        key = (started["flow_id"], started["version"])
        if key not in graphs:
            version = FlowVersion.objects.get(flow_id=key[0], number=key[1])
            graphs[key] = Graph.from_document(version.graph)
        graph = graphs[key]
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
        updated_at=state.updated_at,
        finished_at=state.finished_at,
        concurrency_key=state.concurrency_key,
        wait_reason=state.wait_reason,
    ).save()
    Step.objects.filter(run_id=run_id).delete()
    Timer.objects.filter(run_id=run_id).delete()
    rows, timers = [], []
    undo = [node for node in state.steps if node not in graph.nodes or node not in graph.order]
    for index, node in enumerate([*graph.order, *undo]):
        step = state.steps[node]
        rows.append(
            Step(
                run_id=run_id,
                node_id=node,
                position=index,
                connector=graph.nodes[node]["type"],
                status=step.status,
                attempt=step.attempt,
                revision=step.revision,
                port=step.port or "",
                input=step.input,
                output=step.output,
                error=step.error,
                errors=step.errors,
                idempotency_key=step.idempotency_key,
                lease_until=step.lease_until,
                due_at=step.due_at,
                wait_reason=step.wait_reason,
                wait_target=step.wait_target,
                outcome_unknown=step.outcome_unknown,
                iterations=step.iterations,
                scheduled_at=step.scheduled_at,
                started_at=step.started_at,
                finished_at=step.finished_at,
            )
        )
        if step.status in (decider.WAITING, decider.RETRYING) and step.due_at is not None:
            kind = "retry" if step.status == decider.RETRYING else step.wait_reason or "timer"
            timers.append(
                Timer(
                    run_id=run_id, node_id=node, attempt=step.attempt, kind=kind, due_at=step.due_at
                )
            )
    Step.objects.bulk_create(rows)
    Timer.objects.bulk_create(timers)
