"""The one writer of a run's step and timer rows, from its state before and
after a change: the driver's commit calls it with the states on either side
of the commit, the rebuild with an empty state and the state its whole log
evolves to. Both therefore lay rows out alike (the position of a
compensation step included), which tests/test_rebuild_equality.py checks.
"""

import dataclasses
from collections.abc import Iterable

from runs import decider
from runs.decider import Graph, RunState, StepState
from runs.follow_ups import new_timer, timer_kind
from runs.ground.inserts import insert_values
from runs.models import Run, Step, Timer

# A step row's columns that hold its state (``port`` is "" for None).
STEP_FIELDS = [f.name for f in dataclasses.fields(StepState) if f.name != "node"]
RUN_FIELDS = ("status", "input", "output", "error", "root_run_id", "lineage_id", "finished_at",
              "updated_at", "concurrency_key", "wait_reason", "version_number",
              "last_success")  # fmt: skip
TIMED = (decider.WAITING, decider.RETRYING)


def positions(graph: Graph, steps: Iterable[str]) -> dict[str, int]:
    """A step's position is its place in the graph's topological order;
    compensation steps, which are outside it, follow in the order the saga
    scheduled them (the order the run's state holds them)."""
    order = set(graph.order)
    extra = [node for node in steps if node not in order]
    return {node: index for index, node in enumerate([*graph.order, *extra])}


def _columns(step: StepState, names: Iterable[str]) -> dict:
    columns = {name: getattr(step, name) for name in names}
    if "port" in columns:
        columns["port"] = step.port or ""
    return columns


def _changed(old: StepState, new: StepState) -> list[str]:
    return [name for name in STEP_FIELDS if getattr(old, name) != getattr(new, name)]


def write_steps(run_id: int, graph: Graph, before: RunState, after: RunState) -> None:
    """Bring the step and timer rows of ``before`` to ``after``: new steps
    get full rows, changed ones only their changed columns (most commits
    touch a few fields of one or two steps, and JSON columns are costly).
    A run moved to another version (``run.migrated``) loses the rows of the
    pending steps it dropped, and its other rows take their place and
    connector in the new graph, as a rebuild lays them out."""
    dropped = [node for node in before.steps if node not in after.steps]
    if dropped:
        Step.objects.filter(run_id=run_id, node_id__in=dropped).delete()
        Timer.objects.filter(run_id=run_id, node_id__in=dropped).delete()
    if before.version_number != after.version_number and before.steps:
        place = positions(graph, after.steps)
        for node in after.steps:
            if node in before.steps:
                Step.objects.filter(run_id=run_id, node_id=node).update(
                    position=place[node], connector=graph.nodes[node]["type"]
                )
    added = [node for node in after.steps if node not in before.steps]
    if added:
        place = positions(graph, after.steps)
        # One statement for the new rows (a pure run's start adds them all).
        insert_values([
            Step(run_id=run_id, node_id=node, position=place[node],
                 connector=graph.nodes[node]["type"], **_columns(after.steps[node], STEP_FIELDS))
            for node in added
        ])  # fmt: skip
    timers = []
    for node, step in after.steps.items():
        old = before.steps.get(node)
        if old is not None and old != step:
            Step.objects.filter(run_id=run_id, node_id=node).update(
                **_columns(step, _changed(old, step))
            )
            _drop_timer(run_id, old, step)
        if new_timer(old, step) and step.due_at is not None:
            timers.append(Timer(run_id=run_id, node_id=node, attempt=step.attempt,
                                kind=timer_kind(step), due_at=step.due_at))  # fmt: skip
    Timer.objects.bulk_create(timers)


def _drop_timer(run_id: int, old: StepState, new: StepState) -> None:
    """The timer of a wait or retry that ended (or moved to a new attempt)."""
    if old.status in TIMED and (new.status != old.status or new.attempt != old.attempt):
        Timer.objects.filter(run_id=run_id, node_id=new.node, attempt=old.attempt).delete()


def write_run_fields(run: Run, before: RunState, after: RunState) -> None:
    """The run's own row changes only when a run-level fact does (most steps
    leave it alone: one statement fewer per step); every fact at the start."""
    changed = {
        name: getattr(after, name)
        for name in RUN_FIELDS
        if getattr(after, name) != getattr(before, name) or before.status == decider.RUN_PENDING
    }
    if changed:
        Run.objects.filter(pk=run.pk).update(**changed)
        for name, value in changed.items():
            setattr(run, name, value)
