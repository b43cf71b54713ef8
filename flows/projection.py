"""Fold a flow's events into its inventory row.

``evolve`` is the only code that knows how each ``flow.*`` event changes a
``Flow``; live writes (``project``) and ``rebuild_projections`` both use it,
so a rebuilt row equals the live one.
"""

import datetime as dt

from django.contrib.auth import get_user_model

from flows.models import Flow, Status, Team
from runs.models import Event, Stream

# Inventory facts carried by flow.created and flow.edited, in form order.
INVENTORY_FIELDS = [
    "name",
    "slug",
    "kind",
    "external_platform",
    "external_url",
    "purpose",
    "team",
    "criticality",
    "runbook",
    "failure_mode",
    "review_cadence_days",
    "tags",
    "external_systems",
]

STATUS_EVENTS = {
    "flow.activated": Status.ACTIVE,
    "flow.paused": Status.PAUSED,
    "flow.retired": Status.RETIRED,
}


def user_ref(user) -> dict | None:
    return None if user is None else {"id": user.pk, "username": user.username}


def team_ref(team) -> dict | None:
    return None if team is None else {"id": team.pk, "name": team.name}


def _set_field(flow: Flow, field: str, value) -> None:
    if field == "team":
        flow.team_id = value["id"] if value else None
    elif field == "owner":
        flow.owner_id = value["id"] if value else None
    else:
        setattr(flow, field, value)


def evolve(flow: Flow | None, event: Event) -> Flow:
    payload = event.payload
    if event.type == "flow.created":
        flow = Flow(id=payload["flow_id"], created_at=event.occurred_at, status=Status.DRAFT)
        for field, value in payload["fields"].items():
            _set_field(flow, field, value)
    elif flow is None:
        raise ValueError(f"{event} arrived before its flow.created")
    elif event.type == "flow.edited":
        for field, change in payload["changes"].items():
            _set_field(flow, field, change["to"])
    elif event.type == "flow.owner_changed":
        _set_field(flow, "owner", payload["to"])
    elif event.type in STATUS_EVENTS:
        flow.status = STATUS_EVENTS[event.type]
    elif event.type == "flow.reviewed":
        flow.last_reviewed_on = dt.date.fromisoformat(payload["reviewed_on"])
        flow.last_reviewed_by = payload["by"]
    # Unknown flow.* types (added by later features) leave the inventory as is.
    flow.updated_at = event.occurred_at
    flow.version = event.seq
    return flow


def project(event: Event) -> Flow:
    """Apply one new event to its row, inside the appending transaction."""
    current = None
    if event.type != "flow.created":
        current = Flow.objects.get(pk=event.payload["flow_id"])
    flow = evolve(current, event)
    flow.save(force_insert=event.type == "flow.created")
    return flow


def rebuild() -> int:
    """Derive every Flow row again from the events; returns rows written.

    Rows are upserted by id rather than dropped, so rows that reference a
    flow (runs, later) are not cascaded away while the rebuild runs.
    """
    existing_teams = set(Team.objects.values_list("id", flat=True))
    existing_users = set(get_user_model().objects.values_list("id", flat=True))
    seen: set[int] = set()
    names = Stream.objects.filter(name__startswith="flow:").values_list("name", flat=True)
    for name in names:
        flow = None
        for event in Event.objects.filter(stream=name).order_by("seq").iterator():
            flow = evolve(flow, event)
        if flow is None:
            continue
        # Teams and users are configuration, not events; one deleted since
        # leaves the fact empty rather than dangling.
        if flow.team_id not in existing_teams:
            flow.team_id = None
        if flow.owner_id not in existing_users:
            flow.owner_id = None
        flow.save()
        seen.add(flow.pk)
    Flow.objects.exclude(pk__in=seen).delete()
    return len(seen)
