"""Reads of runs across all flows: the runs list's filters and its keyset
pages.

The list is ordered newest first by (created_at, id) and paged by a cursor
holding the last row's pair, never by OFFSET: a page deep in a million runs
costs what the first one does (an index walk from the cursor), and a run
that starts while someone pages does not shift the rows under them.
Counting stops at ``COUNT_CAP``: an exact count of a million matching rows
is a full scan that tells nobody anything a "10,000+" does not."""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from flows.models import Flow
from runs import decider
from runs.ground import keyset
from runs.models import Run, Step

PAGE_SIZE = 50
COUNT_CAP = 10_000

# How a run was started, read from the actor its run.started event names
# (the projection's ``started_by``): a filter value and the prefix it means.
TRIGGERS = {
    "webhook": ("Webhook", Q(started_by="webhook") | Q(started_by__startswith="webhook:")),
    "schedule": ("Schedule", Q(started_by="schedule") | Q(started_by__startswith="schedule:")),
    "event": ("Event", Q(started_by__startswith="topic:")),
    "queue": ("Queue", Q(started_by__startswith="queue:")),
    "manual": ("Person", Q(started_by__startswith="user:")),
    "subflow": ("Sub-flow", Q(started_by__startswith="run:")),
    "system": ("System", Q(started_by__startswith="system:")),
}

STATUSES = [
    decider.RUN_PENDING, decider.RUN_RUNNING, decider.RUN_WAITING, decider.RUN_SUCCEEDED,
    decider.RUN_FAILED, decider.RUN_CANCELLED, decider.RUN_COMPENSATING,
    decider.RUN_COMPENSATED,
]  # fmt: skip

LIVE_STEP = [
    decider.SCHEDULED, decider.RUNNING, decider.WAITING, decider.RETRYING,
    decider.DEAD_LETTERED, decider.COMPENSATING,
]  # fmt: skip


@dataclass
class RunFilters:
    flow: str = ""  # part of the flow's name or slug
    status: str = ""
    trigger: str = ""
    started_from: date | None = None
    started_to: date | None = None
    q: str = ""  # text in the run's input
    key: str = ""  # the flow's business key, exactly (an order id)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params) -> "RunFilters":
        """The filters a query string asks for; a value that cannot be used
        is left out and explained in ``errors``, never a 500."""
        names = ("flow", "status", "trigger", "q", "key")
        text = {k: params.get(k, "").strip()[:200] for k in names}
        filters = cls(**text)
        if filters.status and filters.status not in STATUSES:
            filters.errors["status"] = f"“{filters.status}” is not a run status."
            filters.status = ""
        if filters.trigger and filters.trigger not in TRIGGERS:
            filters.errors["trigger"] = f"“{filters.trigger}” is not a trigger."
            filters.trigger = ""
        for name in ("started_from", "started_to"):
            raw = params.get(name, "").strip()
            if raw:
                try:
                    setattr(filters, name, date.fromisoformat(raw))
                except ValueError:
                    filters.errors[name] = f"“{raw[:40]}” is not a date (YYYY-MM-DD)."
        for name in ("q", "key", "flow"):
            if "\x00" in getattr(filters, name):
                filters.errors[name] = "The text may not contain a NUL character."
                setattr(filters, name, "")
        return filters

    @property
    def active(self) -> bool:
        return any((self.flow, self.status, self.trigger, self.started_from, self.started_to,
                    self.q, self.key))  # fmt: skip


def filtered_runs(filters: RunFilters) -> QuerySet[Run]:
    runs = Run.objects.all()
    if filters.flow:
        # Flows are few and runs many: name the matching flows first, so the
        # runs are read by flow id from their index rather than joined.
        named = Flow.objects.filter(
            Q(name__icontains=filters.flow) | Q(slug__icontains=filters.flow)
        ).values_list("pk", flat=True)
        runs = runs.filter(flow_id__in=list(named))
    if filters.key:
        runs = runs.filter(business_key=filters.key)
    if filters.status:
        runs = runs.filter(status=filters.status)
    if filters.trigger:
        runs = runs.filter(TRIGGERS[filters.trigger][1])
    zone = timezone.get_current_timezone()
    if filters.started_from:
        runs = runs.filter(created_at__gte=datetime.combine(filters.started_from, time(), zone))
    if filters.started_to:
        end = datetime.combine(filters.started_to + timedelta(days=1), time(), zone)
        runs = runs.filter(created_at__lt=end)
    if filters.q:
        # On PostgreSQL a trigram index on the input's text serves this
        # (runs/migrations/0009); SQLite scans, which the embedded default
        # can afford.
        runs = runs.annotate(input_text=Cast("input", TextField())).filter(
            input_text__icontains=filters.q
        )
    return runs


BadCursor = keyset.BadCursor


def encode_cursor(run: Run) -> str:
    return keyset.encode(run.created_at, run.pk)


decode_cursor = keyset.decode


@dataclass
class RunRow:
    run: Run
    current_step: str
    duration: timedelta


@dataclass
class RunsPage:
    rows: list[RunRow]
    next_cursor: str
    count: int
    count_capped: bool


def runs_page(filters: RunFilters, *, after: str = "", size: int | None = None) -> RunsPage:
    size = size or PAGE_SIZE
    runs = filtered_runs(filters).select_related("flow").order_by("-created_at", "-id")
    if after:
        when, pk = decode_cursor(after)
        runs = runs.filter(keyset.before("created_at", when, pk))
    found = list(runs[: size + 1])
    more = len(found) > size
    found = found[:size]
    if not after and not more:
        # The whole answer is on this page: its length is the count, and a
        # second walk of the filters (a trigram scan, say) would only repeat it.
        count, capped = len(found), False
    else:
        count, capped = capped_count(filtered_runs(filters))
    return RunsPage(
        rows=with_current_steps(found),
        next_cursor=encode_cursor(found[-1]) if more else "",
        count=count,
        count_capped=capped,
    )


def capped_count(runs: QuerySet[Run]) -> tuple[int, bool]:
    """How many runs match, counting no further than ``COUNT_CAP``."""
    seen = runs.order_by().values("pk")[: COUNT_CAP + 1].count()
    return min(seen, COUNT_CAP), seen > COUNT_CAP


def with_current_steps(runs: list[Run]) -> list[RunRow]:
    """Each run with the step it is at (the first live one in the flow's
    order), from one query for the whole page."""
    live = (
        Step.objects.filter(run_id__in=[r.pk for r in runs], status__in=LIVE_STEP)
        .order_by("run_id", "position")
        .values_list("run_id", "node_id")
    )
    current: dict[int, str] = {}
    for run_id, node in live:
        current.setdefault(run_id, node)
    now = timezone.now()
    return [
        RunRow(
            run=r,
            current_step=current.get(r.pk, ""),
            duration=(r.finished_at or now) - r.created_at,
        )
        for r in runs
    ]
