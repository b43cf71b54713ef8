"""Incremental verification of the event log's hash chains, with alerts.

Each tick verifies, stream by stream, the events after the stream's
checkpoint, within a budget of events, so a log of millions is checked a
slice at a time and a tick never runs long. A break is recorded once: the
checkpoint is marked broken by a compare-and-set, and the alert event is
appended in the same transaction, so two ticks racing alert once.

What a forward pass cannot see: an event altered after it was verified.
``manage.py verify_audit_chain`` re-reads every chain from its start.
"""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from runs.ground import clock
from runs.ground.eventstore import GENESIS_HASH, ChainBreak, append, verify_from
from runs.models import ChainCheckpoint, Stream

ALERT_STREAM = "audit:alerts"
ALERT_TYPE = "audit.chain_broken"
VERIFIER = "system:audit"
EVENTS_PER_TICK = 5000


@dataclass
class TickReport:
    streams: int = 0
    events: int = 0
    breaks: int = 0


def streams_behind():
    """Streams with events after their checkpoint and no known break."""
    checkpoints = ChainCheckpoint.objects.filter(stream=OuterRef("name"))
    return (
        Stream.objects.annotate(
            verified=Coalesce(Subquery(checkpoints.values("seq")[:1]), 0),
            broken=Subquery(checkpoints.values("broken_seq")[:1]),
        )
        .filter(Q(broken__isnull=True), last_seq__gt=F("verified"))
        .order_by("name")
    )


def verify_chains(*, budget: int = EVENTS_PER_TICK) -> TickReport:
    """Verify up to ``budget`` unverified events, stream by stream."""
    report = TickReport()
    for stream in streams_behind().iterator(chunk_size=200):
        if budget <= 0:
            break
        checked, broken = _verify_stream(stream.name, limit=budget)
        budget -= max(checked, 1)
        report.streams += 1
        report.events += checked
        report.breaks += broken
    return report


def _verify_stream(name: str, *, limit: int) -> tuple[int, bool]:
    checkpoint = ChainCheckpoint.objects.filter(stream=name).first()
    after_seq, after_hash = (checkpoint.seq, checkpoint.hash) if checkpoint else (0, GENESIS_HASH)
    progress = verify_from(name, after_seq=after_seq, after_hash=after_hash, limit=limit)
    now = clock.now()
    ChainCheckpoint.objects.update_or_create(
        stream=name,
        defaults={"seq": progress.seq, "hash": progress.hash, "verified_at": now},
    )
    broken = progress.problem is not None and _record_break(progress.problem)
    return progress.seq - after_seq, broken


@transaction.atomic
def _record_break(problem: ChainBreak) -> bool:
    """Mark the stream broken and alert, once: only the tick whose update
    changes the row appends the alert."""
    marked = ChainCheckpoint.objects.filter(stream=problem.stream, broken_seq__isnull=True).update(
        broken_seq=problem.seq, broken_reason=problem.reason
    )
    if marked != 1:
        return False
    payload = {
        "stream": problem.stream,
        "seq": problem.seq,
        "event_id": problem.event_id,
        "reason": problem.reason,
    }
    append(ALERT_STREAM, ALERT_TYPE, payload, actor=VERIFIER)
    return True
