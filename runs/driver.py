"""The engine's entry points, by the names the rest of the product calls.

The engine lives in rooms by job: ``session`` (one locked transaction on a
run), ``rows`` (the rows a commit or a rebuild writes), ``follow_ups`` (what
a commit wakes up), ``perform`` (rendering and running a step), ``execute``
(claim, perform, finish of a side-effecting step), ``services`` (every
change asked from outside), ``concurrency`` (keys and their queue) and
``subflows``. Only the decider (``runs/decider.py``) says what may happen.
"""

from runs.concurrency import StartRefused, release_queued
from runs.execute import execute_step
from runs.migration import replay_many_on_newest, replay_on_newest
from runs.services import (
    cancel_run,
    continue_run,
    discard_dead_letter,
    expire_lease,
    fire_timer,
    give_up_wait,
    lineage_of,
    replay_dead_letter,
    replay_run,
    resume_run,
    signal_step,
    start_run,
)
from runs.session import graph_for, record_iterations
from runs.subflows import cancel_orphans, signal_parent

__all__ = [
    "StartRefused", "cancel_orphans", "cancel_run", "continue_run", "discard_dead_letter",
    "execute_step", "expire_lease", "fire_timer", "give_up_wait", "graph_for", "lineage_of",
    "record_iterations", "release_queued", "replay_dead_letter", "replay_many_on_newest",
    "replay_on_newest", "replay_run", "resume_run",
    "signal_parent", "signal_step", "start_run",
]  # fmt: skip
