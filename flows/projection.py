"""Fold a flow's events into its inventory row.

``evolve`` is the only code that knows how each ``flow.*`` event changes a
``Flow``; live writes (``project``) and ``rebuild_projections`` both use it,
so a rebuilt row equals the live one.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth import get_user_model

from flows.models import DraftSnapshot, Flow, FlowVersion, Status, Team
from runs.ground.models import Event, Stream

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
    "alert_to",
    "review_cadence_days",
    "tags",
    "external_systems",
]

# A test run's pinned draft snapshot: on the flow's stream, but not an
# inventory change (no ``flow.`` prefix), so it leaves the row's edit version.
SNAPSHOT_EVENT = "test.snapshot_pinned"

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
    if not event.type.startswith("flow."):
        # Facts other code records on the flow's stream (a connector's drift)
        # are not inventory changes: they leave the row, and its edit version,
        # as they are, live and on rebuild alike.
        return flow
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
    elif event.type == "flow.draft_saved":
        flow.draft_graph = payload["graph"]
    elif event.type == "flow.published":
        flow.published_version = payload["number"]
    elif event.type == "flow.secrets_moved" and "draft" in payload:
        flow.draft_graph = payload["draft"]
    elif event.type == "flow.reviewed":
        flow.last_reviewed_on = dt.date.fromisoformat(payload["reviewed_on"])
        flow.last_reviewed_by = payload["by"]
    # Unknown flow.* types (added by later features) leave the inventory as is.
    flow.updated_at = event.occurred_at
    flow.version = event.seq
    return flow


def version_from(event: Event) -> FlowVersion:
    payload = event.payload
    return FlowVersion(
        flow_id=payload["flow_id"],
        number=payload["number"],
        graph=payload["graph"],
        graph_hash=payload["graph_hash"],
        note=payload.get("note", ""),
        published_by=event.actor,
        published_at=event.occurred_at,
    )


def snapshot_from(event: Event) -> DraftSnapshot:
    payload = event.payload
    return DraftSnapshot(
        flow_id=payload["flow_id"],
        graph_hash=payload["graph_hash"],
        graph=payload["graph"],
        pinned_by=event.actor,
        pinned_at=event.occurred_at,
    )


def project_events(events: Sequence[Event]) -> None:
    """The live projector of ``flow:`` streams (registered in FlowsConfig)."""
    for event in events:
        project(event)


def project(event: Event) -> Flow:
    """Apply one new event to its rows, inside the appending transaction."""
    current = None
    if event.type != "flow.created":
        current = Flow.objects.get(pk=event.payload["flow_id"])
    if event.type == SNAPSHOT_EVENT:
        snapshot_from(event).save(force_insert=True)
        return current
    flow = evolve(current, event)
    flow.save(force_insert=event.type == "flow.created")
    if event.type == "flow.published":
        version_from(event).save(force_insert=True)
    elif event.type == "flow.secrets_moved":
        for moved in event.payload["versions"]:
            FlowVersion.objects.filter(flow_id=flow.pk, number=moved["number"]).update(
                graph=moved["graph"], graph_hash=moved["graph_hash"]
            )
    return flow


def _apply_moves(versions: list[FlowVersion], payload: dict) -> None:
    """A secrets move replaces whole graphs of published versions (their
    keys became credentials): the runnable graph is the moved one."""
    moved = {m["number"]: m for m in payload["versions"]}
    for version in versions:
        if version.flow_id == payload["flow_id"] and version.number in moved:
            version.graph = moved[version.number]["graph"]
            version.graph_hash = moved[version.number]["graph_hash"]


def rebuild() -> int:
    """Derive every Flow row again from the events; returns rows written.

    Rows are upserted by id rather than dropped, so rows that reference a
    flow (runs, later) are not cascaded away while the rebuild runs.
    """
    existing_teams = set(Team.objects.values_list("id", flat=True))
    existing_users = set(get_user_model().objects.values_list("id", flat=True))
    seen: set[int] = set()
    names = Stream.objects.filter(name__startswith="flow:").values_list("name", flat=True)
    versions, snapshots = [], []
    for name in names:
        flow = None
        for event in Event.objects.filter(stream=name).order_by("seq").iterator():
            flow = evolve(flow, event)
            if event.type == "flow.published":
                versions.append(version_from(event))
            elif event.type == "flow.secrets_moved":
                _apply_moves(versions, event.payload)
            elif event.type == SNAPSHOT_EVENT:
                snapshots.append(snapshot_from(event))
        if flow is None:
            continue
        # Users are configuration, not events, and teams are rebuilt first
        # from their own streams: one gone since leaves the fact empty
        # rather than dangling.
        if flow.team_id not in existing_teams:
            flow.team_id = None
        if flow.owner_id not in existing_users:
            flow.owner_id = None
        flow.save()
        seen.add(flow.pk)
    Flow.objects.exclude(pk__in=seen).delete()
    # Versions are immutable and runs refer to them by (flow, number), not id.
    FlowVersion.objects.all().delete()
    FlowVersion.objects.bulk_create(versions)
    # Test runs name their snapshot by (flow, graph hash), not id.
    DraftSnapshot.objects.all().delete()
    DraftSnapshot.objects.bulk_create(snapshots)
    return len(seen)


@dataclass
class TeamFacts:
    """A team row and its members' ids: what the ``team.*`` events fold into."""

    team: Team
    member_ids: set[int]


def _member_ids(refs: list[dict]) -> set[int]:
    return {ref["id"] for ref in refs}


def evolve_team(facts: TeamFacts | None, event: Event) -> TeamFacts:
    payload = event.payload
    if event.type == "team.created":
        team = Team(
            id=payload["team_id"], name=payload["name"], restricts_edits=payload["restricts_edits"]
        )
        return TeamFacts(team, _member_ids(payload["members"]))
    if facts is None:
        raise ValueError(f"{event} arrived before its team.created")
    if event.type == "team.edited":
        for name, change in payload["changes"].items():
            setattr(facts.team, name, change["to"])
    elif event.type == "team.members_changed":
        facts.member_ids |= _member_ids(payload["added"])
        facts.member_ids -= _member_ids(payload["removed"])
    return facts


def _save_team(facts: TeamFacts, *, created: bool) -> Team:
    facts.team.save(force_insert=created)
    facts.team.members.set(facts.member_ids)
    return facts.team


def project_team(event: Event) -> Team:
    """Apply one new ``team.*`` event to its rows, inside the appending
    transaction."""
    current = None
    if event.type != "team.created":
        team = Team.objects.get(pk=event.payload["team_id"])
        current = TeamFacts(team, set(team.members.values_list("id", flat=True)))
    return _save_team(evolve_team(current, event), created=event.type == "team.created")


def rebuild_teams() -> int:
    """Derive every Team row and its members again from the events, by the
    flows' rule: rows upserted by id (flows refer to them), rows no stream
    accounts for deleted. Users are configuration, not events: a member
    deleted since is left out."""
    existing_users = set(get_user_model().objects.values_list("id", flat=True))
    seen: set[int] = set()
    for name in Stream.objects.filter(name__startswith="team:").values_list("name", flat=True):
        facts = None
        for event in Event.objects.filter(stream=name).order_by("seq").iterator():
            facts = evolve_team(facts, event)
        if facts is None:
            continue
        facts.member_ids &= existing_users
        _save_team(facts, created=False)
        seen.add(facts.team.pk)
    Team.objects.exclude(pk__in=seen).delete()
    return len(seen)
