"""Backfills: a scheduled flow run for its past fire times, as Airflow's
backfill does.

An operator names a range (UTC) and how many runs may be in flight at once.
The plan is every fire time of the schedule in the range, oldest first;
fires already recorded (a live fire, an earlier backfill, a skipped or
refused fire) are listed and left alone. Each fire goes through the schedule
trigger's own delivery, keyed by its UTC instant, so the dedup ledger
(``Receipt``, unique per flow, source and key) lets one run start per
instant, whoever fires it first.

**The live cursor.** The live sweep fires the instants after its cursor
(its newest live fire, else the version's publication) up to now. A
backfill covers only instants at or before that cursor as it stands when
the backfill is requested: later ones are the live sweep's, whether it has
fired them yet or not. The cursor only moves forward, so a backfill and the
live sweep never aim at one instant; and the cursor reads live receipts
only (``schedules._cursor``), so a backfill's receipts can neither pull it
back nor push it forward. The receipts of a backfill name it
(``Receipt.backfill_id``), as do their ``trigger.accepted`` events, so a
rebuild derives the same ledger.

**Throttle.** ``top_up`` (ticked by the trigger sweep, and sent again by
itself while runs finish at once) holds the backfill's row lock, counts the
backfill's unfinished runs and starts the oldest pending fires until
``max_in_flight`` are in flight. A backfill is recorded on its own stream,
``backfill:<id>`` (requested, cancelled, finished); its row is the
projection, and its progress is read from its receipts and runs.
"""

import datetime as dt
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Count

from connectors.triggers import intake, schedules
from connectors.triggers.configs import ScheduleConfig
from connectors.triggers.models import Backfill, Binding, Receipt
from flows.services import actor_of, next_row_id
from runs import decider, driver, wakeups
from runs.ground import clock, projectors
from runs.ground.eventstore import append
from runs.ground.models import Event, Stream
from runs.models import Run

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 50
MAX_RANGE = dt.timedelta(days=366)
MAX_RUNS = 10_000
# The earliest start: cron arithmetic near year 1 overflows.
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Fire times already recorded that a preview lists (all are counted).
LISTED = 50
TOP_UP_TASK = "connectors.triggers.tasks.top_up_backfill"
EVENTS = ("backfill.requested", "backfill.cancelled", "backfill.finished")


class BackfillError(ValueError):
    """A backfill that cannot be requested or changed; ``field`` names the
    form field at fault (None: the request as a whole)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass
class Plan:
    """What a backfill of [start, end] would do, before anything starts."""

    flow: Any
    config: ScheduleConfig
    start: dt.datetime
    end: dt.datetime
    until: dt.datetime  # the last instant it may fire (end, or the live cursor)
    max_in_flight: int
    instants: list[dt.datetime]
    already: list[Receipt] = field(default_factory=list)
    after_cursor: int = 0  # fire times in (until, end]: the live sweep's

    @property
    def to_run(self) -> int:
        return len(self.instants) - len(self.already)

    @property
    def listed(self) -> list[Receipt]:
        return self.already[:LISTED]


def _schedule(flow) -> tuple[Binding, ScheduleConfig]:
    binding = Binding.objects.filter(flow=flow).first()
    if binding is None or binding.kind != "schedule":
        raise BackfillError(
            f"“{flow.name}” is not triggered by a schedule; only scheduled flows can be backfilled."
        )
    return binding, ScheduleConfig.model_validate(binding.config)


def plan(flow, *, start: dt.datetime, end: dt.datetime, max_in_flight: int) -> Plan:
    """Check a request and say what it would do; writes nothing."""
    binding, config = _schedule(flow)
    if flow.run_refusal:
        raise BackfillError(flow.run_refusal)
    if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
        raise BackfillError(
            f"Runs in flight must be between 1 and {MAX_IN_FLIGHT}.", "max_in_flight"
        )
    now = clock.now()
    if start < EPOCH:
        raise BackfillError("The start is before 1970; choose a later one.", "start")
    if end < start:
        raise BackfillError("The end is before the start.", "end")
    if start > now or end > now:
        raise BackfillError(
            f"The range reaches into the future (it is now {now:%Y-%m-%d %H:%M} UTC);"
            " a backfill runs past fire times only.",
            "end",
        )
    if end - start > MAX_RANGE:
        raise BackfillError("The range is longer than a year (366 days).", "end")
    cursor = schedules.live_cursor(binding)
    until = min(end, cursor)
    if start > until:
        raise BackfillError(
            f"The live schedule fires every time after {cursor:%Y-%m-%d %H:%M:%S} UTC itself;"
            " a backfill covers fire times up to then. Choose an earlier start.",
            "start",
        )
    instants = fires_in(config, start, until)
    if len(instants) > MAX_RUNS:
        raise BackfillError(
            f"The range holds more than {MAX_RUNS} fire times; backfill it in parts.", "end"
        )
    keys = {schedules.key_of(i) for i in instants}
    already = [r for r in _receipts(flow.pk, start, until) if r.key in keys]
    after_cursor = 0
    if end > until:
        after_cursor = len(fires_in(config, until + dt.timedelta(microseconds=1), end))
    found = Plan(flow, config, start, end, until, max_in_flight, instants, already, after_cursor)
    if found.to_run == 0:
        what = "no fire time" if not instants else "only fire times that already ran"
        raise BackfillError(f"The range holds {what}: nothing to backfill.")
    return found


def fires_in(config: ScheduleConfig, start: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """Fire instants in [start, until] (at most one past the cap), oldest first."""
    return list(_fires(config.cron, config.timezone, start, until))


@functools.lru_cache(maxsize=32)
def _fires(cron: str, timezone: str, start: dt.datetime, until: dt.datetime) -> tuple:
    # A backfill's plan never changes (its cron and range are recorded), and
    # its page asks for it on every refresh.
    config = ScheduleConfig(cron=cron, timezone=timezone)
    after = start - dt.timedelta(microseconds=1)
    return tuple(schedules.fires_between(config, after, until, limit=MAX_RUNS + 1))


def schedule_facts(flow) -> dict:
    """What the backfill form shows beside its fields."""
    facts: dict[str, Any] = {"earlier": Backfill.objects.filter(flow=flow)[:10]}
    try:
        binding, config = _schedule(flow)
    except BackfillError as exc:
        return {**facts, "not_schedule": str(exc)}
    return {**facts, "schedule": config, "cursor": schedules.live_cursor(binding)}


def _receipts(flow_id: int, start: dt.datetime, until: dt.datetime):
    return Receipt.objects.filter(
        flow_id=flow_id,
        source="schedule",
        key__gte=schedules.key_of(start),
        key__lte=schedules.key_of(until),
    ).order_by("key")


# --- the services -----------------------------------------------------------------


def backfill_request(
    flow, *, start: dt.datetime, end: dt.datetime, max_in_flight: int, actor
) -> Backfill:
    """Record a backfill and start its first runs (after the commit)."""
    with transaction.atomic():
        found = plan(flow, start=start, end=end, max_in_flight=max_in_flight)
        backfill_id = next_row_id(Backfill)
        payload = {
            "backfill_id": backfill_id,
            "flow_id": flow.pk,
            "start": _text(start),
            "end": _text(end),
            "until": _text(found.until),
            "cron": found.config.cron,
            "timezone": found.config.timezone,
            "max_in_flight": max_in_flight,
            "planned": len(found.instants),
            "already": len(found.already),
        }
        _record(backfill_id, "backfill.requested", payload, actor)
        transaction.on_commit(lambda: _send_top_up(backfill_id))
    return Backfill.objects.get(pk=backfill_id)


def backfill_cancel(backfill_id: int, *, actor) -> int:
    """Stop a backfill: its pending fires start no run (recorded first), then
    its runs in flight are cancelled through the run engine. Cancelling a
    cancelled backfill again cancels whatever of its runs is still running.
    Returns how many runs were cancelled."""
    with transaction.atomic():
        backfill = Backfill.objects.select_for_update().get(pk=backfill_id)
        if backfill.status == Backfill.FINISHED:
            raise BackfillError("This backfill has finished; there is nothing to cancel.")
        if backfill.status == Backfill.ACTIVE:
            payload = {"backfill_id": backfill.pk, "flow_id": backfill.flow_id}
            _record(backfill.pk, "backfill.cancelled", payload, actor)
    cancelled = 0
    reason = f"backfill {backfill_id} was cancelled"
    for run_id in _in_flight(backfill_id).values_list("pk", flat=True):
        try:
            driver.cancel_run(run_id, actor=actor_of(actor), reason=reason)
        except decider.IllegalTransition:
            continue  # it finished meanwhile, or waits in its concurrency queue
        cancelled += 1
    return cancelled


def top_up(backfill_id: int) -> dict[str, int]:
    """Start the oldest pending fires until ``max_in_flight`` runs of the
    backfill are in flight; record it finished once nothing is pending or
    running. The backfill's row lock makes two top-ups take turns."""
    counts = {"started": 0, "taken": 0}
    with transaction.atomic():
        # Only the backfill's row: a lock on the flow's row would deadlock
        # with a live fire of the same instant, which holds that instant's
        # receipt and needs the flow's row (key share) for its run.
        backfill = (
            Backfill.objects.select_for_update(of=("self",))
            .select_related("flow")
            .filter(pk=backfill_id)
        ).first()
        if backfill is None or backfill.status != Backfill.ACTIVE:
            return counts
        if backfill.flow.run_refusal:
            return counts  # paused: the fires wait, nothing is used up
        config = ScheduleConfig(cron=backfill.cron, timezone=backfill.timezone)
        slots = backfill.max_in_flight - _in_flight(backfill.pk).count()
        pending = _pending(backfill)
        more = False
        for instant in pending:
            if counts["started"] >= slots:
                more = True
                break
            delivery = schedules.delivery_for(
                backfill.flow, config, instant, late=True, backfill=backfill.pk
            )
            outcome = intake.deliver(delivery)
            if outcome.status == "started":
                counts["started"] += 1
            elif outcome.status == "duplicate":
                counts["taken"] += 1  # a live fire or another backfill ran it
            else:  # refused: the flow was paused meanwhile; try again later
                more = True
                break
        in_flight = _in_flight(backfill.pk).count()
        if not more and in_flight == 0:
            _finish(backfill)
        elif more and counts["started"] and in_flight < backfill.max_in_flight:
            # Runs of pure steps finish as they start: go on at once.
            transaction.on_commit(lambda: _send_top_up(backfill_id))
    return counts


def sweep() -> dict[str, int]:
    """Top up every active backfill (ticked by beat with the trigger sweep)."""
    started = 0
    for backfill_id in Backfill.objects.filter(status=Backfill.ACTIVE).values_list("pk", flat=True):
        started += top_up(backfill_id)["started"]
    return {"backfill_runs": started}


def _finish(backfill: Backfill) -> None:
    summary = progress(backfill)
    payload = {
        "backfill_id": backfill.pk,
        "flow_id": backfill.flow_id,
        "summary": {k: summary[k] for k in ("started", "succeeded", "failed", "cancelled")},
    }
    _record(backfill.pk, "backfill.finished", payload, "system:backfill")


def _pending(backfill: Backfill):
    """Fire times of the plan with no receipt, oldest first.

    Fires start oldest first and each commits its receipt, so every planned
    time up to the backfill's newest receipt is taken: look after it."""
    newest = (
        Receipt.objects.filter(backfill_id=backfill.pk)
        .order_by("-key")
        .values_list("key", flat=True)
    ).first()
    position = backfill.start - dt.timedelta(microseconds=1)
    if newest is not None:
        position = max(position, _instant(newest))
    instants = [
        i for i in _fires(backfill.cron, backfill.timezone, backfill.start, backfill.until)
        if i > position
    ]  # fmt: skip
    for offset in range(0, len(instants), schedules.BATCH):
        chunk = instants[offset : offset + schedules.BATCH]
        taken = set(
            Receipt.objects.filter(
                flow_id=backfill.flow_id,
                source="schedule",
                key__in=[schedules.key_of(i) for i in chunk],
            ).values_list("key", flat=True)
        )
        for instant in chunk:
            if schedules.key_of(instant) not in taken:
                yield instant


def _runs(backfill_id: int):
    started = Receipt.objects.filter(backfill_id=backfill_id, run_id__isnull=False)
    return Run.objects.filter(pk__in=started.values("run_id"))


def _in_flight(backfill_id: int):
    return _runs(backfill_id).filter(status__in=decider.RUN_UNFINISHED)


def progress(backfill: Backfill) -> dict[str, int]:
    """Counts for the page: read from the backfill's receipts and runs."""
    statuses = dict(_runs(backfill.pk).values_list("status").annotate(n=Count("id")))
    keys = {
        schedules.key_of(i)
        for i in _fires(backfill.cron, backfill.timezone, backfill.start, backfill.until)
    }
    taken = sum(1 for r in _receipts(backfill.flow_id, backfill.start, backfill.until)
                .values_list("key", flat=True) if r in keys)  # fmt: skip
    started = sum(statuses.values())
    return {
        "planned": backfill.planned,
        "started": started,
        "in_flight": sum(statuses.get(s, 0) for s in decider.RUN_UNFINISHED),
        "succeeded": statuses.get(decider.RUN_SUCCEEDED, 0),
        "failed": statuses.get(decider.RUN_FAILED, 0) + statuses.get(decider.RUN_COMPENSATED, 0),
        "cancelled": statuses.get(decider.RUN_CANCELLED, 0),
        # Fire times recorded by others: before the request, or since.
        "elsewhere": taken - started,
        "pending": len(keys) - taken,
    }


def recent_runs(backfill: Backfill, limit: int = 20):
    return _runs(backfill.pk).order_by("-id")[:limit]


def _send_top_up(backfill_id: int) -> None:
    try:
        wakeups.send(TOP_UP_TASK, (backfill_id,))
    except Exception as exc:  # the broker is down: the sweep tops up
        log.warning("could not send the top-up of backfill %s (%s)", backfill_id, exc)


# --- events and the projection ------------------------------------------------------


def _text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def _instant(key: str) -> dt.datetime:
    return dt.datetime.strptime(key, schedules.KEY_FORMAT).replace(tzinfo=dt.UTC)


def _record(backfill_id: int, type_: str, payload: dict, actor) -> None:
    event = append(f"backfill:{backfill_id}", type_, payload, actor=actor_of(actor))
    projectors.project([event])


def apply(event: Event, row: Backfill | None = None) -> Backfill:
    """Fold one backfill event into its row: live and in a rebuild alike."""
    p = event.payload
    if event.type == "backfill.requested":
        return Backfill(
            id=p["backfill_id"],
            flow_id=p["flow_id"],
            requested_by=event.actor,
            requested_at=event.occurred_at,
            start=dt.datetime.fromisoformat(p["start"]),
            end=dt.datetime.fromisoformat(p["end"]),
            until=dt.datetime.fromisoformat(p["until"]),
            cron=p["cron"],
            timezone=p["timezone"],
            max_in_flight=p["max_in_flight"],
            planned=p["planned"],
            already=p["already"],
            status=Backfill.ACTIVE,
        )
    if row is None:
        row = Backfill.objects.get(pk=p["backfill_id"])
    row.status = Backfill.CANCELLED if event.type == "backfill.cancelled" else Backfill.FINISHED
    row.ended_at = event.occurred_at
    row.ended_by = event.actor
    row.summary = p.get("summary", {})
    return row


def project(events) -> None:
    """Live: the backfill's row, in the transaction that appended its event."""
    for event in events:
        if event.type in EVENTS:
            apply(event).save()


def rebuild(flows: set[int]) -> int:
    Backfill.objects.all().delete()
    rows: dict[int, Backfill] = {}
    names = Stream.objects.filter(name__startswith="backfill:").values_list("name", flat=True)
    for event in Event.objects.filter(stream__in=list(names), type__in=EVENTS).order_by(
        "stream", "seq"
    ):
        backfill_id = event.payload["backfill_id"]
        if event.type == "backfill.requested" or backfill_id in rows:
            rows[backfill_id] = apply(event, rows.get(backfill_id))
    Backfill.objects.bulk_create(r for r in rows.values() if r.flow_id in flows)
    return len(rows)
