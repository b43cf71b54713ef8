"""The dashboard's figures, overall or for one flow, read from the database
when the page is asked for.

Every run figure is bounded by the window (``created_at`` over the last
48 hours), so the queries walk the (created_at, id) or (flow, created_at, id)
index and stay cheap however many runs are older. Test runs of drafts are not
the flows' record in service and are left out everywhere.
"""

import datetime as dt
import math
from dataclasses import dataclass

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum
from django.db.models.functions import TruncHour

from approvals.models import ApprovalTask, TaskStatus
from connectors.outbound.models import Breaker
from connectors.triggers import schedules
from connectors.triggers.models import Binding
from flows.alerts.selectors import open_incidents
from flows.models import Flow, Status
from flows.views import node_breakers
from runs import decider
from runs.ground import clock
from runs.models import Run, Step

WINDOW_HOURS = 48


@dataclass
class Durations:
    p50: dt.timedelta | None
    p95: dt.timedelta | None

    @property
    def p50_text(self) -> str:
        return spoken(self.p50)

    @property
    def p95_text(self) -> str:
        return spoken(self.p95)


def spoken(duration: dt.timedelta | None) -> str:
    if duration is None:
        return "—"
    seconds = duration.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


@dataclass
class NextFire:
    flow: Flow
    at: dt.datetime | None


def window_start(now: dt.datetime) -> dt.datetime:
    """The first whole hour of the window, so every bar covers a full hour."""
    return now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=WINDOW_HOURS - 1)


def runs_in_window(*, flow: Flow | None, since: dt.datetime) -> QuerySet[Run]:
    runs = Run.objects.filter(created_at__gte=since, is_test=False)
    return runs.filter(flow=flow) if flow else runs


def hourly(runs: QuerySet[Run], *, since: dt.datetime) -> dict[str, list]:
    """Runs started per hour, and how many of those have succeeded or failed,
    one slot per hour of the window (hours without runs are zero). Runs are
    bucketed by the hour they started: that walks the created_at index,
    where bucketing by finish time would scan every run."""
    rows = (
        runs.annotate(hour=TruncHour("created_at", tzinfo=dt.UTC))
        .values("hour")
        .annotate(
            started=Count("id"),
            succeeded=Count("id", filter=Q(status=decider.RUN_SUCCEEDED)),
            failed=Count("id", filter=Q(status=decider.RUN_FAILED)),
        )
        .order_by()
    )
    by_hour = {row["hour"]: row for row in rows}
    hours = [since + dt.timedelta(hours=n) for n in range(WINDOW_HOURS)]
    empty = {"started": 0, "succeeded": 0, "failed": 0}
    return {
        "hours": [int(hour.timestamp()) for hour in hours],
        **{key: [by_hour.get(hour, empty)[key] for hour in hours] for key in empty},
    }


def success_rate(runs: QuerySet[Run]) -> float | None:
    """Succeeded among the runs that finished succeeded or failed; ``None``
    when none has, rather than a rate of nothing."""
    figures = runs.aggregate(
        succeeded=Count("id", filter=Q(status=decider.RUN_SUCCEEDED)),
        failed=Count("id", filter=Q(status=decider.RUN_FAILED)),
    )
    finished = figures["succeeded"] + figures["failed"]
    return figures["succeeded"] / finished if finished else None


def durations(runs: QuerySet[Run]) -> Durations:
    """p50 and p95 of finished runs' durations by the nearest-rank method: the
    database sorts and returns the one row at each rank, on SQLite (which has
    no percentile function) as on PostgreSQL."""
    finished = runs.filter(finished_at__isnull=False).annotate(
        duration=ExpressionWrapper(F("finished_at") - F("created_at"), output_field=DurationField())
    )
    total = finished.count()
    if not total:
        return Durations(None, None)
    ordered = finished.order_by("duration", "id").values_list("duration", flat=True)
    return Durations(*(ordered[nearest_rank(p, total) - 1] for p in (50, 95)))


def nearest_rank(percentile: int, total: int) -> int:
    return max(1, math.ceil(percentile / 100 * total))


def dead_letter_depth(flow: Flow | None) -> int:
    letters = Step.objects.filter(status=decider.DEAD_LETTERED, run__is_test=False)
    return (letters.filter(run__flow=flow) if flow else letters).count()


def approval_figures(flow: Flow | None = None) -> dict[str, int]:
    """Open approval tasks, those past due, and the SLA breaches recorded on
    every task (config/metrics.py exports the same figures)."""
    tasks = ApprovalTask.objects.filter(flow=flow) if flow else ApprovalTask.objects.all()
    figures = tasks.filter(status=TaskStatus.OPEN).aggregate(
        waiting=Count("id"), overdue=Count("id", filter=Q(due_at__lt=clock.now()))
    )
    figures["breaches"] = tasks.aggregate(n=Sum("breaches"))["n"] or 0
    return figures


def breakers_open(flow: Flow | None) -> list[str]:
    """Open breakers' targets; for one flow, those its published nodes call."""
    if flow is None:
        return list(
            Breaker.objects.filter(state="open").order_by("target").values_list("target", flat=True)
        )
    return sorted(entry["target"] for entry in node_breakers(flow) if entry["state"] == "open")


def next_fires(flow: Flow | None) -> list[NextFire]:
    """The next fire of each active flow's schedule."""
    bindings = Binding.objects.filter(kind="schedule", flow__status=Status.ACTIVE)
    if flow:
        bindings = bindings.filter(flow=flow)
    fires = []
    for binding in bindings.select_related("flow").order_by("flow__name"):
        upcoming = schedules.upcoming(binding, count=1)
        fires.append(NextFire(binding.flow, upcoming[0] if upcoming else None))
    return fires


def dashboard(flow: Flow | None) -> dict:
    now = clock.now()
    since = window_start(now)
    runs = runs_in_window(flow=flow, since=since)
    series = hourly(runs, since=since)
    return {
        "since": since,
        "series": series,
        "totals": {key: sum(series[key]) for key in ("started", "succeeded", "failed")},
        "success_rate": success_rate(runs),
        "durations": durations(runs),
        "dead_letters": dead_letter_depth(flow),
        "approvals": approval_figures(flow),
        "breakers_open": breakers_open(flow),
        "next_fires": next_fires(flow),
        "incidents": list(open_incidents(flow)),
    }
