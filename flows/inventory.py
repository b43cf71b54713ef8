"""Reads of the inventory: filtering for the list, findings for the audit."""

from dataclasses import dataclass

from django.db.models import Case, IntegerField, Q, QuerySet, Value, When

from flows.models import CRITICALITY_RANK, Flow, Status

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
    return flows.order_by(*SORTS[filters.sort])


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
