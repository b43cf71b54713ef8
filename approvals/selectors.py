"""Reads for the inbox, the queues and the badge."""

import datetime as dt

from django.db.models import Case, Count, F, IntegerField, Min, Q, QuerySet, Sum, Value, When

from approvals.models import ApprovalTask, TaskStatus
from runs.ground.models import Event

TABS = ("mine", "groups", "decided")


def _for_user(user) -> Q:
    return (
        Q(assignee_user=user)
        | Q(claimed_by=user)
        | Q(assignee_user__isnull=True, assignee_group__in=user.groups.all())
    )


def overdue_first(tasks: QuerySet, now: dt.datetime) -> QuerySet:
    return tasks.annotate(
        overdue=Case(
            When(due_at__lt=now, then=Value(0)), default=Value(1), output_field=IntegerField()
        )  # fmt: skip
    ).order_by("overdue", F("due_at").asc(nulls_last=True), "requested_at")


def inbox(user, *, tab: str, now: dt.datetime, filters: dict | None = None) -> QuerySet:
    tasks = ApprovalTask.objects.select_related(
        "flow", "run", "assignee_user", "assignee_group", "claimed_by"
    )
    if tab == "mine":
        mine = Q(assignee_user=user) | Q(claimed_by=user)
        return overdue_first(tasks.filter(mine, status=TaskStatus.OPEN), now)
    if tab == "groups":
        groups = Q(assignee_user__isnull=True, assignee_group__in=user.groups.all())
        return overdue_first(tasks.filter(groups, status=TaskStatus.OPEN), now)
    decided = tasks.exclude(status=TaskStatus.OPEN)
    if not user.has_perm("approvals.manage_queues"):
        decided = decided.filter(_for_user(user) | Q(decided_by=user))
    filters = filters or {}
    if filters.get("decision"):
        decided = decided.filter(decision=filters["decision"])
    if filters.get("flow"):
        decided = decided.filter(flow__slug=filters["flow"])
    if filters.get("q"):
        decided = decided.filter(
            Q(title__icontains=filters["q"]) | Q(comment__icontains=filters["q"])
        )
    if filters.get("decided_by"):
        decided = decided.filter(decided_by_name__iexact=filters["decided_by"])
    return decided.order_by(F("decided_at").desc(nulls_last=True), "-pk")


def badge_count(user) -> int:
    return ApprovalTask.objects.filter(_for_user(user), status=TaskStatus.OPEN).count()


def queues(now: dt.datetime) -> list[dict]:
    """Every queue (a group, or a person's own tasks) with its backlog."""
    rows = (
        ApprovalTask.objects.filter(status=TaskStatus.OPEN)
        .values("assignee_group__name", "assignee_user__username")
        .annotate(
            backlog=Count("pk"),
            oldest=Min("requested_at"),
            overdue=Count("pk", filter=Q(due_at__lt=now)),
            claimed=Count("pk", filter=Q(claimed_by__isnull=False)),
        )
        .order_by("-backlog")
    )
    return [
        {
            "name": r["assignee_group__name"] or f"{r['assignee_user__username']} (personal)",
            "backlog": r["backlog"],
            "oldest": r["oldest"],
            "overdue": r["overdue"],
            "claimed": r["claimed"],
        }
        for r in rows
    ]


def metrics() -> dict:
    """Figures for the dashboard and metrics: backlog and SLA breaches."""
    totals = ApprovalTask.objects.aggregate(
        backlog=Count("pk", filter=Q(status=TaskStatus.OPEN)),
        breaches=Sum("breaches"),
        escalated=Count("pk", filter=Q(escalation_level__gt=0)),
    )
    return {k: v or 0 for k, v in totals.items()}


def run_history(task: ApprovalTask) -> QuerySet:
    return Event.objects.filter(stream=task.run.stream).order_by("seq")
