"""What a commit on a run must wake up once it is committed: a pure function
of the run's state before and after the commit and its graph (no database,
no broker), so every rule here is tested without either.

A lost message costs only time: the recovery sweep finds each of these
again from the rows (``runs/sweeper.py``).
"""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from runs import decider, wakeups
from runs.decider import Graph, RunState, StepState

# Waits shorter than this also get a Celery countdown, so short retries and
# delays do not wait for the sweep; the durable timer row stays the truth.
FAST_TIMER_SECONDS = 5.0


@dataclass(frozen=True)
class RunFacts:
    """The run's facts that its state does not hold."""

    flow_id: int
    has_parent: bool = False


@dataclass(frozen=True)
class Send:
    task: str
    args: tuple[Any, ...]
    countdown: float = 0.0


def is_disabled(graph: Graph, node: str) -> bool:
    return bool(graph.nodes[node].get("disabled"))


def runs_inline(graph: Graph, node: str) -> bool:
    """Pure steps, and disabled ones (they call nothing), need no worker."""
    return graph.inline(node) or is_disabled(graph, node)


def newly_scheduled(before: RunState, after: RunState, graph: Graph) -> list[StepState]:
    """Side-effecting steps scheduled between the two states (they need a
    worker): new, newly scheduled, or scheduled again for a new attempt."""
    old = before.steps
    return [
        step
        for step in after.steps.values()
        if step.status == decider.SCHEDULED
        and not runs_inline(graph, step.node)
        and (
            step.node not in old
            or old[step.node].status != decider.SCHEDULED
            or old[step.node].attempt != step.attempt
        )
    ]


def timer_kind(step: StepState) -> str:
    return "retry" if step.status == decider.RETRYING else step.wait_reason or "timer"


def new_timer(old: StepState | None, new: StepState) -> bool:
    """Whether ``new`` (was ``old``) starts a timer: it entered a timed
    status, or a new attempt of one, with a due time."""
    if new.status not in (decider.WAITING, decider.RETRYING) or new.due_at is None:
        return False
    return old is None or old.status != new.status or old.attempt != new.attempt


def fast_timers(before: RunState, after: RunState, now: dt.datetime) -> list[Send]:
    sends = []
    for node, step in after.steps.items():
        if not new_timer(before.steps.get(node), step):
            continue
        assert step.due_at is not None  # new_timer says so
        delay = (step.due_at - now).total_seconds()
        if delay <= FAST_TIMER_SECONDS:
            args = (after.run_id, node, step.attempt, timer_kind(step))
            sends.append(Send(wakeups.FIRE_TIMER, args, max(0.0, delay)))
    return sends


def finished(before: RunState, after: RunState) -> bool:
    return after.status in decider.RUN_TERMINAL and before.status not in decider.RUN_TERMINAL


def orphans_subflow(before: RunState, after: RunState) -> bool:
    """A step that waited for a sub-flow was cancelled: its child is unwanted."""
    for node, step in after.steps.items():
        old = before.steps.get(node)
        if (
            step.status == decider.CANCELLED
            and old is not None
            and old.status == decider.WAITING
            and old.wait_reason == "subflow"
        ):
            return True
    return False


def plan(
    before: RunState, after: RunState, graph: Graph, *, run: RunFacts,
    now: dt.datetime, continuation: bool = False,
) -> list[Send]:  # fmt: skip
    """The messages to send once the change from ``before`` to ``after`` is
    committed. ``continuation``: the inline budget ran out with pure steps
    still ready."""
    run_id = after.run_id
    sends = [
        Send(wakeups.EXECUTE_STEP, (run_id, step.node, step.attempt))
        for step in newly_scheduled(before, after, graph)
    ]
    if continuation:
        sends.append(Send(wakeups.CONTINUE_RUN, (run_id,)))
    sends += fast_timers(before, after, now)
    if run.has_parent and finished(before, after):
        # A sub-flow's run tells its parent step when it ends.
        sends.append(Send(wakeups.SIGNAL_PARENT, (run_id,)))
    if orphans_subflow(before, after):
        sends.append(Send(wakeups.CANCEL_ORPHANS, (run_id,)))
    if after.concurrency_key and finished(before, after):
        # A run that finishes lets the next run with its key start.
        sends.append(Send(wakeups.RELEASE_QUEUED, (run.flow_id, after.concurrency_key)))
    return sends
