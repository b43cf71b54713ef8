"""Schedule fires: computed by the trigger sweep, recorded once each.

Cron is evaluated on the flow's local wall clock, then each wall time is
placed in UTC. Across a spring-forward gap, a wall time that does not exist
fires at the next valid instant (the end of the gap); across a fall-back
overlap, an ambiguous wall time fires once, on its first occurrence. Every
fire is keyed by its UTC instant, so wall times that land on one instant (all
of a gap) fire once, and two sweeps racing insert one receipt between them.
"""

import datetime as dt
import logging
import zoneinfo

from croniter import croniter
from django.conf import settings

from connectors.triggers import intake
from connectors.triggers.configs import ScheduleConfig
from connectors.triggers.models import Binding, Receipt
from runs.ground import clock

log = logging.getLogger(__name__)
KEY_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Fires per flow per sweep: a long outage catches up over several sweeps.
BATCH = 100


def to_utc(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """A naive local wall time as a UTC instant (see the module's DST rules)."""
    local = wall.replace(tzinfo=zone, fold=0)
    if _exists(local, zone):
        return local.astimezone(dt.UTC)
    probe = wall.replace(second=0, microsecond=0)
    for _ in range(24 * 60):  # gaps are at most hours long
        probe += dt.timedelta(minutes=1)
        if _exists(probe.replace(tzinfo=zone), zone):
            return probe.replace(tzinfo=zone).astimezone(dt.UTC)
    raise ValueError(f"no valid time after {wall} in {zone}")


def _exists(local: dt.datetime, zone: zoneinfo.ZoneInfo) -> bool:
    round_trip = local.astimezone(dt.UTC).astimezone(zone)
    return round_trip.replace(tzinfo=None) == local.replace(tzinfo=None)


def fires_between(
    config: ScheduleConfig, after: dt.datetime, until: dt.datetime, limit: int = BATCH
) -> list[dt.datetime]:
    """UTC fire instants in (after, until], oldest first."""
    zone = zoneinfo.ZoneInfo(config.timezone)
    # Start one hour early on the wall clock: after a fall-back the local
    # time of ``after`` repeats, and fires already made are filtered below.
    start = after.astimezone(zone).replace(tzinfo=None) - dt.timedelta(hours=1)
    walls = croniter(config.cron, start)
    fires: list[dt.datetime] = []
    while len(fires) < limit:
        instant = to_utc(walls.get_next(dt.datetime), zone)
        if instant > until:
            break
        if instant > after and (not fires or instant > fires[-1]):
            fires.append(instant)
    return fires


def key_of(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime(KEY_FORMAT)


def _cursor(binding: Binding) -> dt.datetime:
    """Where the live sweep goes on: its newest fire, else the publication.

    Only live receipts count. A backfill fires only instants at or before
    this cursor as it stood when the backfill was requested (see
    connectors/triggers/backfills.py), and the cursor only moves forward, so
    the two never share an instant; and since its receipts are left out
    here, a backfill can neither pull the cursor back (a flow published
    today, backfilled over last month, must not catch up from last month)
    nor push it past instants the live sweep has not fired."""
    last = (
        Receipt.objects.filter(flow_id=binding.flow_id, source="schedule", backfill_id__isnull=True)
        .order_by("-key")
        .values_list("key", flat=True)
        .first()
    )
    if last is None:
        return binding.since
    return dt.datetime.strptime(last, KEY_FORMAT).replace(tzinfo=dt.UTC)


def live_cursor(binding: Binding) -> dt.datetime:
    """The live sweep's cursor, for a backfill to stop at (see ``_cursor``)."""
    return _cursor(binding)


def sweep(now: dt.datetime) -> dict[str, int]:
    counts = {"started": 0, "skipped": 0, "refused": 0, "duplicate": 0}
    bindings = Binding.objects.filter(kind="schedule").exclude(flow__status="retired")
    for binding in bindings.select_related("flow"):
        config = ScheduleConfig.model_validate(binding.config)
        for instant in fires_between(config, _cursor(binding), now):
            outcome = fire(binding, config, instant, now)
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


def delivery_for(
    flow, config: ScheduleConfig, instant: dt.datetime, *, late: bool, backfill: int | None = None
) -> intake.Delivery:
    """The delivery of one fire, keyed by its UTC instant: a live fire and a
    backfill's fire of one instant claim the same receipt."""
    local = instant.astimezone(zoneinfo.ZoneInfo(config.timezone))
    fire_input = {
        "fire_time": key_of(instant),
        "local_time": local.isoformat(),
        "timezone": config.timezone,
        "late": late,
    }
    if backfill is not None:
        fire_input["backfill"] = backfill
    return intake.Delivery(
        flow=flow,
        source="schedule",
        key=key_of(instant),
        actor="schedule" if backfill is None else f"schedule:backfill-{backfill}",
        # A live fire refused (the flow paused) is final; a backfill's is
        # not: the fire stays pending until the flow runs again.
        final_refusal=backfill is None,
        input=fire_input,
        detail={"fire_time": key_of(instant)},
        backfill=backfill,
    )


def fire(
    binding: Binding, config: ScheduleConfig, instant: dt.datetime, now: dt.datetime
) -> intake.Outcome:
    late = (now - instant).total_seconds() > settings.LEDGERFLOW_SCHEDULE_GRACE_SECONDS
    delivery = delivery_for(binding.flow, config, instant, late=late)
    if late and config.catch_up == "skip":
        return intake.record_without_run(
            delivery,
            "skipped",
            f"missed by {int((now - instant).total_seconds())}s;"
            " the schedule's catch-up policy is skip",
        )
    return intake.deliver(delivery)


def upcoming(binding: Binding, count: int = 3) -> list[dt.datetime]:
    config = ScheduleConfig.model_validate(binding.config)
    now = clock.now()
    return fires_between(config, now, now + dt.timedelta(days=366), limit=count)
