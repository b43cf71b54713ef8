"""Triage of dead letters: who looks after one, and the notes left on it.

Each dead letter has a stream of its own, ``deadletter:<run>:<node>``, so
that triage never locks or lengthens the run's stream (the driver holds the
run row while it decides; a note must not queue behind it). Its events are
projected to ``DeadLetterAssignment`` and ``DeadLetterNote`` in the same
transaction, and ``rebuild`` derives both tables from the streams alone."""

from collections.abc import Iterable, Sequence

from django.contrib.auth import get_user_model
from django.db import transaction

from runs import decider
from runs.ground import eventstore
from runs.ground.models import Event, Stream
from runs.ground.projectors import project
from runs.models import DeadLetterAssignment, DeadLetterNote, Step

STREAM_PREFIX = "deadletter:"
ASSIGNED, ANNOTATED = "deadletter.assigned", "deadletter.annotated"
MAX_NOTE = 2000


class TriageRefused(ValueError):
    """The assignment or note cannot be recorded; the message says why."""


def stream_of(run_id: int, node: str) -> str:
    return f"{STREAM_PREFIX}{run_id}:{node}"


def _letters(steps: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """The pairs that name a dead letter now, in a stable order; refuses
    the whole request when one does not, so nothing is half recorded."""
    wanted = sorted(set(steps))
    if not wanted:
        raise TriageRefused("Select the dead letters first.")
    found = set(
        Step.objects.filter(status=decider.DEAD_LETTERED, run__is_test=False)
        .filter(run_id__in={run for run, _ in wanted})
        .values_list("run_id", "node_id")
    )
    missing = [f"run {run} step {node}" for run, node in wanted if (run, node) not in found]
    if missing:
        raise TriageRefused(f"Not a dead letter (any more): {', '.join(missing[:5])}.")
    return wanted


def _record(type_: str, payloads: Sequence[dict], actor: str) -> int:
    new = [
        eventstore.NewEvent(stream=stream_of(p["run_id"], p["node"]), type=type_, payload=p,
                            actor=actor)
        for p in payloads
    ]  # fmt: skip
    with transaction.atomic():
        project(eventstore.append_many(new))
    return len(new)


def dead_letters_assign(*, steps: Iterable[tuple[int, str]], assignee: str, actor: str) -> int:
    """Give the dead letters to ``assignee`` (a username; "" takes them
    back). Returns how many were assigned."""
    assignee = assignee.strip()
    if assignee and not get_user_model().objects.filter(username=assignee, is_active=True).exists():
        raise TriageRefused(f"Nobody active is called “{assignee[:150]}”.")
    payloads = [{"run_id": run, "node": node, "assignee": assignee}
                for run, node in _letters(steps)]  # fmt: skip
    return _record(ASSIGNED, payloads, actor)


def dead_letters_annotate(*, steps: Iterable[tuple[int, str]], text: str, actor: str) -> int:
    text = text.strip()
    if not text:
        raise TriageRefused("Write the note first.")
    if len(text) > MAX_NOTE:
        raise TriageRefused(f"A note holds at most {MAX_NOTE} characters.")
    payloads = [{"run_id": run, "node": node, "text": text} for run, node in _letters(steps)]
    return _record(ANNOTATED, payloads, actor)


def project_events(events: Sequence[Event]) -> None:
    for event in events:
        payload = event.payload
        where = {"run_id": payload["run_id"], "node_id": payload["node"]}
        if event.type == ASSIGNED and payload["assignee"]:
            DeadLetterAssignment.objects.update_or_create(
                **where,
                defaults={"assignee": payload["assignee"], "assigned_by": event.actor,
                          "assigned_at": event.occurred_at},
            )  # fmt: skip
        elif event.type == ASSIGNED:
            DeadLetterAssignment.objects.filter(**where).delete()
        elif event.type == ANNOTATED:
            DeadLetterNote.objects.create(
                **where, seq=event.seq, text=payload["text"], actor=event.actor,
                written_at=event.occurred_at,
            )  # fmt: skip


def rebuild() -> int:
    DeadLetterAssignment.objects.all().delete()
    DeadLetterNote.objects.all().delete()
    names = Stream.objects.filter(name__startswith=STREAM_PREFIX).values_list("name", flat=True)
    for name in names:
        project_events(list(Event.objects.filter(stream=name).order_by("seq")))
    return DeadLetterAssignment.objects.count() + DeadLetterNote.objects.count()
