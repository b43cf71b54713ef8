"""The recovery sweep: the path by which nothing is lost.

Beat ticks it every ``LEDGERFLOW_SWEEP_SECONDS``. It fires due timers, expires
leases of steps whose worker died mid-call, and re-dispatches scheduled work
whose message never arrived (lost between commit and enqueue, fetched by a
worker that then died, or dropped by a broker restart). The broker's own
redelivery is a convenience; this sweep is the guarantee. Recovery deadline:
a lost step is picked up within its lease plus one sweep interval; a lost
message within ``LEDGERFLOW_REDISPATCH_SECONDS`` plus one sweep interval, and
re-sent at most once per that interval while it stays lost. A step whose
message still waits in the broker's queue is not lost, however long it
waits: re-sending it would only lengthen the queue (runs/brokerqueue.py).
"""

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q
from kombu.exceptions import KombuError

from connectors import base as connectors
from runs import brokerqueue, concurrency, decider, services, subflows, wakeups
from runs.models import Run, Step, Timer

log = logging.getLogger(__name__)
BATCH = 200


def sweep(now: dt.datetime) -> dict[str, int]:
    fired = 0
    for timer in Timer.objects.filter(due_at__lte=now).order_by("due_at")[:BATCH]:
        if services.fire_timer(timer.run_id, timer.node_id, timer.attempt, timer.kind):
            fired += 1
    expired = 0
    stale_leases = Step.objects.filter(status=decider.RUNNING, lease_until__lt=now)
    for step in stale_leases.order_by("lease_until")[:BATCH]:
        if services.expire_lease(step.run_id, step.node_id, step.attempt):
            expired += 1
    paced = pace_held_steps(now)
    redispatched = redispatch_lost(now)
    resignalled = resignal_subflows()
    orphans = cancel_orphaned_subflows()
    released = release_queues()
    if fired or expired or redispatched or resignalled or orphans or released:
        log.info("sweep: %s timers fired, %s leases expired, %s redispatched, "
                 "%s sub-flow results re-sent, %s orphaned sub-flows cancelled, "
                 "%s queued runs released",
                 fired, expired, redispatched, resignalled, orphans, released)  # fmt: skip
    return {"timers": fired, "leases": expired, "redispatched": redispatched,
            "subflows": resignalled, "orphans": orphans, "released": released,
            "paced": paced}  # fmt: skip


def resignal_subflows() -> int:
    """Finished sub-flow runs whose parent step still waits: the message sent
    on the child's terminal commit was lost (or the child ended before the
    parent step recorded its wait). Signalling is idempotent."""
    waiting_parent = Step.objects.filter(
        run_id=OuterRef("parent_run_id"),
        node_id=OuterRef("parent_node"),
        # The child of this attempt's key: an older child (before an edited
        # replay) no longer answers the step.
        idempotency_key=OuterRef("parent_key"),
        status=decider.WAITING,
        wait_reason="subflow",
    )
    finished = Run.objects.filter(
        parent_run_id__isnull=False, status__in=decider.RUN_TERMINAL
    ).filter(Exists(waiting_parent))
    return sum(
        subflows.signal_parent(child) for child in finished.values_list("pk", flat=True)[:BATCH]
    )


def pace_held_steps(now: dt.datetime) -> int:
    """Held steps' release times are spread a fraction of a second apart
    (connectors/outbound/breakers.py); firing them only on sweep ticks would bunch them
    into bursts. Timers of holds due before the next tick are sent with their
    own time as the message's ETA (not a countdown, which the sender turns
    into an ETA from the moment of sending, so the first, slower send of a
    batch would shift the spacing). A duplicate fire is harmless: the timer
    row is deleted by the one that fires."""
    horizon = now + dt.timedelta(seconds=settings.LEDGERFLOW_SWEEP_SECONDS)
    soon = Timer.objects.filter(
        kind__in=decider.HOLD_REASONS, due_at__gt=now, due_at__lte=horizon
    ).order_by("due_at")[:BATCH]
    count = 0
    for timer in soon:
        try:
            wakeups.send(
                wakeups.FIRE_TIMER,
                (timer.run_id, timer.node_id, timer.attempt, timer.kind),
                eta=timer.due_at,
            )
        except Exception as exc:  # the broker is down: the next tick fires it
            log.warning("could not pace held step %s/%s: %s", timer.run_id, timer.node_id, exc)
            break
        count += 1
    return count


def redispatch_lost(now: dt.datetime) -> int:
    """Re-send scheduled steps whose message seems lost, each at most once
    per ``LEDGERFLOW_REDISPATCH_SECONDS``: under a backlog a step waits its
    turn in the queue, and re-sending it on every tick would only lengthen
    the queue it waits in. ``scheduled_at`` is projected from the
    ``step.scheduled`` event and never moves, so the last re-send is kept in
    ``redispatched_at`` (with a count in ``redispatches``), columns that no
    event records and a rebuild leaves empty."""
    try:
        waiting = brokerqueue.waiting_work(wakeups.task(wakeups.EXECUTE_STEP).app)
    except brokerqueue.TooLong:
        return 0  # a re-send would queue behind all of it: nothing gained
    cutoff = now - dt.timedelta(seconds=settings.LEDGERFLOW_REDISPATCH_SECONDS)
    lost = Step.objects.filter(status=decider.SCHEDULED, scheduled_at__lt=cutoff).filter(
        Q(redispatched_at__isnull=True) | Q(redispatched_at__lt=cutoff)
    )
    count = 0
    continued: set[int] = set()
    # Not sliced: queued steps are skipped, and must not hide lost ones
    # behind them; the re-sends are what a batch bounds.
    for step in lost.order_by("scheduled_at").iterator():
        if count >= BATCH:
            break
        inline = connectors.get(step.connector).inline
        if waiting is not None and _key(step, inline) in waiting:
            continue  # its message still waits in the queue: queued, not lost
        if not _mark_redispatched(step, now):
            continue  # another sweeper re-sent it, or the step moved on
        # Duplicates are harmless: claims are compare-and-set on the attempt.
        try:
            if not inline:
                wakeups.send(wakeups.EXECUTE_STEP, (step.run_id, step.node_id, step.attempt))
            elif step.run_id not in continued:
                wakeups.send(wakeups.CONTINUE_RUN, (step.run_id,))
                continued.add(step.run_id)
        except (KombuError, OSError) as exc:  # the broker is down: re-sent next interval
            log.warning("could not re-send step %s/%s: %s", step.run_id, step.node_id, exc)
            break
        count += 1
    return count


def _key(step: Step, inline: bool) -> tuple:
    if inline:
        return ("continue_run", step.run_id)
    return ("execute_step", step.run_id, step.node_id, step.attempt)


def _mark_redispatched(step: Step, now: dt.datetime) -> bool:
    """Compare-and-set on the step as read: of two sweeps at once, one
    re-sends. Marked before sending: a send that fails is retried an
    interval later, like a lost message."""
    return bool(
        Step.objects.filter(
            pk=step.pk,
            status=decider.SCHEDULED,
            attempt=step.attempt,
            redispatched_at=step.redispatched_at,
        ).update(redispatched_at=now, redispatches=F("redispatches") + 1)
    )


def cancel_orphaned_subflows() -> int:
    """Live sub-flow runs whose parent step was cancelled: the message sent
    on the parent's commit was lost."""
    cancelled_parent = Step.objects.filter(
        run_id=OuterRef("parent_run_id"),
        node_id=OuterRef("parent_node"),
        idempotency_key=OuterRef("parent_key"),
        status=decider.CANCELLED,
    )
    orphans = Run.objects.filter(parent_run_id__isnull=False, status__in=decider.RUN_LIVE)
    parents = orphans.filter(Exists(cancelled_parent)).values_list("parent_run_id", flat=True)
    distinct = {parent for parent in parents[:BATCH] if parent is not None}
    return sum(subflows.cancel_orphans(parent) for parent in distinct)


def release_queues() -> int:
    """Runs queued behind a concurrency key whose predecessors have all
    finished, but whose release message was lost: the sweep, not the
    message, guarantees they start. A queue whose head still runs is not
    touched."""
    unfinished_before = Run.objects.filter(
        flow_id=OuterRef("flow_id"),
        concurrency_key=OuterRef("concurrency_key"),
        pk__lt=OuterRef("pk"),
    ).exclude(status__in=decider.RUN_TERMINAL)
    stuck = (
        Run.objects.filter(wait_reason=decider.QUEUED_CONCURRENCY)
        .exclude(Exists(unfinished_before))
        .order_by("pk")
        .values_list("flow_id", "concurrency_key")
    )
    return sum(1 for flow_id, key in stuck[:BATCH] if concurrency.release_queued(flow_id, key))
