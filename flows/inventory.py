"""Reads of the inventory: filtering for the list, findings for the audit."""

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import (
    Case,
    Count,
    IntegerField,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)

from flows.models import CRITICALITY_RANK, Flow, Status
from runs import decider
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run, Step

HEALTH_DAYS = 7
# What a failure leaves in a run's stream; anything else a person does is an
# operator's action (a replay, a discard, a cancel, a new start).
FAILURE_EVENTS = ("run.failed", "step.dead_lettered")

SORTS = {
    "name": ("name",),
    "-name": ("-name",),
    "criticality": ("-criticality_rank", "name"),
    "status": ("status", "name"),
    "owner": ("owner__username", "name"),
    "updated": ("-updated_at",),
    "review": ("last_reviewed_on", "name"),
}


@dataclass
class InventoryFilter:
    q: str = ""
    owner: str = ""
    team: str = ""
    status: str = ""
    criticality: str = ""
    kind: str = ""
    sort: str = "name"

    @classmethod
    def from_params(cls, params) -> "InventoryFilter":
        values = {name: params.get(name, "").strip()[:100] for name in cls.__annotations__}
        if values["sort"] not in SORTS:
            values["sort"] = "name"
        return cls(**values)


def inventory(filters: InventoryFilter) -> QuerySet[Flow]:
    flows = Flow.objects.select_related("owner", "team").annotate(
        criticality_rank=Case(
            *[When(criticality=key, then=Value(rank)) for key, rank in CRITICALITY_RANK.items()],
            output_field=IntegerField(),
        )
    )
    if filters.q:
        # Tags and systems are JSON lists; a substring match on their text
        # finds "stripe" in ["Stripe", "Salesforce"] on SQLite and PostgreSQL.
        flows = flows.filter(
            Q(name__icontains=filters.q)
            | Q(slug__icontains=filters.q)
            | Q(purpose__icontains=filters.q)
            | Q(tags__icontains=filters.q)
            | Q(external_systems__icontains=filters.q)
            | Q(external_platform__icontains=filters.q)
        )
    if filters.owner == "none":
        flows = flows.filter(owner__isnull=True)
    elif filters.owner:
        flows = flows.filter(owner__username=filters.owner)
    if filters.team == "none":
        flows = flows.filter(team__isnull=True)
    elif filters.team.isdigit():
        flows = flows.filter(team_id=int(filters.team))
    if filters.status in Status.values:
        flows = flows.filter(status=filters.status)
    if filters.criticality in CRITICALITY_RANK:
        flows = flows.filter(criticality=filters.criticality)
    if filters.kind:
        flows = flows.filter(kind=filters.kind)
    return with_last_run(flows).order_by(*SORTS[filters.sort])


def with_last_run(flows: QuerySet[Flow]) -> QuerySet[Flow]:
    """The newest run in service of each flow: one walk of the (flow, id) index."""
    last = Run.objects.filter(flow=OuterRef("pk"), is_test=False).order_by("-id")
    return flows.annotate(
        last_run_id=Subquery(last.values("id")[:1]),
        last_run_at=Subquery(last.values("created_at")[:1]),
        last_run_status=Subquery(last.values("status")[:1]),
    )


@dataclass
class Health:
    succeeded: int = 0
    failed: int = 0
    dead_letters: int = 0

    @property
    def success_rate(self) -> float | None:
        finished = self.succeeded + self.failed
        return self.succeeded / finished if finished else None


def with_health(flows: list[Flow]) -> list[Flow]:
    """Give each flow ``health``: its success rate over the last week and its
    dead letters, in two grouped queries for the whole list."""
    ids = [flow.pk for flow in flows]
    since = clock.now() - dt.timedelta(days=HEALTH_DAYS)
    recent = Run.objects.filter(flow_id__in=ids, created_at__gte=since, is_test=False)
    outcomes = (
        recent.order_by()
        .values("flow_id")
        .annotate(
            succeeded=Count("id", filter=Q(status=decider.RUN_SUCCEEDED)),
            failed=Count("id", filter=Q(status=decider.RUN_FAILED)),
        )
    )
    health = {
        row["flow_id"]: Health(row["succeeded"], row["failed"]) for row in outcomes.order_by()
    }
    letters = Step.objects.filter(
        status=decider.DEAD_LETTERED, run__flow_id__in=ids, run__is_test=False
    )
    for row in letters.values("run__flow_id").annotate(n=Count("id")).order_by():
        health.setdefault(row["run__flow_id"], Health()).dead_letters = row["n"]
    for flow in flows:
        flow.health = health.get(flow.pk, Health())
    return flows


@dataclass
class Finding:
    flow: Flow
    problems: list[str]


def audit_findings() -> list[Finding]:
    """Every flow still in service that lacks an inventory fact or a review."""
    findings = []
    flows = Flow.objects.exclude(status=Status.RETIRED).select_related("owner", "team")
    for flow in flows.order_by("name"):
        words = {
            "owner": "no owner",
            "active_owner": f"owner {flow.owner.username} is inactive" if flow.owner else "",
            "runbook": "no runbook",
            "failure_mode": "no failure mode",
        }
        problems = [words[code] for code in flow.missing_facts]
        if flow.review_overdue:
            problems.append(f"review overdue since {flow.review_due_on.isoformat()}")
        if problems:
            findings.append(Finding(flow, problems))
    return findings


@dataclass
class SilentFailure:
    flow: Flow
    first_failure_at: dt.datetime
    failed_runs: set[int] = field(default_factory=set)


def failing_silently() -> list[SilentFailure]:
    """Active flows whose runs failed or dead-lettered in the last week, with
    no action by a person on those runs, the flow or its later runs since the
    first failure. Both reads are bounded by time on the events' time index,
    and a person's events are few, so a busy flow costs no more than a quiet one."""
    since = clock.now() - dt.timedelta(days=HEALTH_DAYS)
    failures = _first_failures(since)
    if not failures:
        return []
    earliest = min(failure.first_failure_at for failure in failures.values())
    for flow_id, acted_at in _people_acting(earliest):
        failure = failures.get(flow_id)
        if failure and acted_at > failure.first_failure_at:
            del failures[flow_id]
    return sorted(failures.values(), key=lambda failure: failure.flow.name)


def _run_ids(streams) -> list[int]:
    keys = (stream.removeprefix("run:") for stream in streams)
    return [int(key) for key in keys if key.isdigit()]


def _first_failures(since: dt.datetime) -> dict[int, SilentFailure]:
    events = Event.objects.filter(
        type__in=FAILURE_EVENTS, occurred_at__gte=since, stream__startswith="run:"
    )
    first_by_run = dict(
        events.order_by()
        .values("stream")
        .annotate(at=Min("occurred_at"))
        .values_list("stream", "at")
    )
    runs = Run.objects.filter(
        pk__in=_run_ids(first_by_run), is_test=False, flow__status=Status.ACTIVE
    ).select_related("flow", "flow__owner")
    failures: dict[int, SilentFailure] = {}
    for run in runs:
        at = first_by_run[run.stream]
        failure = failures.setdefault(run.flow_id, SilentFailure(run.flow, at))
        failure.first_failure_at = min(failure.first_failure_at, at)
        failure.failed_runs.add(run.pk)
    return failures


def _people_acting(since: dt.datetime) -> list[tuple[int, dt.datetime]]:
    """(flow id, when) of every action by a person since ``since`` on a flow
    or on one of its runs."""
    acts = (
        Event.objects.filter(occurred_at__gte=since, actor__startswith="user:")
        .exclude(type__in=FAILURE_EVENTS)
        .values_list("stream", "occurred_at")
    )
    found: list[tuple[int, dt.datetime]] = []
    on_runs: list[tuple[int, dt.datetime]] = []
    for stream, at in acts:
        kind, _, key = stream.partition(":")
        if not key.isdigit():
            continue
        if kind == "flow":
            found.append((int(key), at))
        elif kind == "run":
            on_runs.append((int(key), at))
    flow_of = dict(
        Run.objects.filter(pk__in=[run for run, _ in on_runs]).values_list("pk", "flow_id")
    )
    return found + [(flow_of[run], at) for run, at in on_runs if run in flow_of]
