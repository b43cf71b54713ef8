"""A run's events as its page's timeline: each at its offset from the run's
start, and an outcome with how long it took (a step's attempt from its
start, the run from its first event)."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from runs.decider import RUN_FINISHES
from runs.ground.models import Event
from runs.session import ENGINE  # the engine's own decisions: not named

# The events that end a step's attempt: the time since its step.started.
STEP_ENDS = {"step.succeeded", "step.attempt_failed", "step.lease_expired", "step.cancelled"}


@dataclass(frozen=True)
class Entry:
    event: Event
    since_start: timedelta
    took: timedelta | None = None
    by: str = ""  # who, when not the engine: "olga", "webhook:orders"


def timeline(events: Iterable[Event]) -> list[Entry]:
    entries: list[Entry] = []
    first: datetime | None = None
    began: dict[str, tuple[Any, datetime]] = {}  # node -> (attempt, started at)
    for event in events:
        at = event.occurred_at
        first = first or at
        node, attempt = event.payload.get("node"), event.payload.get("attempt")
        took = None
        if event.type == "step.started" and node:
            began[node] = (attempt, at)
        elif event.type in STEP_ENDS and node in began:
            started_attempt, started_at = began[node]
            if attempt is None or attempt == started_attempt:
                took = at - started_at
                del began[node]
        elif event.type in RUN_FINISHES:
            took = at - first
        by = "" if event.actor == ENGINE else event.actor.removeprefix("user:")
        entries.append(Entry(event, at - first, took, by))
    return entries
