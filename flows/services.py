"""Writes to the inventory. Each is an event on the flow's stream, projected
onto the Flow row in the same transaction."""

import datetime as dt
from dataclasses import dataclass

from django.db import IntegrityError, connection, models, transaction

from flows import graph as graph_module
from flows.models import Flow, FlowVersion, Status
from flows.projection import INVENTORY_FIELDS, team_ref, user_ref
from runs.ground import clock, projectors
from runs.ground.eventstore import NewEvent, append_many
from runs.ground.models import Event


class FlowError(Exception):
    """A request the inventory refuses; the message is shown to the user."""


class ActivationBlocked(FlowError):
    def __init__(self, missing: list[str]):
        self.missing = missing
        super().__init__("Cannot activate: this flow needs " + _join(missing) + ".")


class StaleEdit(FlowError):
    pass


# action -> (states it may start from, resulting event)
TRANSITIONS = {
    "activate": ({Status.DRAFT, Status.PAUSED}, "flow.activated"),
    "pause": ({Status.ACTIVE}, "flow.paused"),
    "retire": ({Status.DRAFT, Status.ACTIVE, Status.PAUSED}, "flow.retired"),
}


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def actor_of(actor) -> str:
    """A person as ``user:<name>``; a text actor (``system:migration``, say)
    is recorded as given."""
    return actor if isinstance(actor, str) else f"user:{actor.username}"


def _serialise(field: str, value):
    if field == "team":
        return team_ref(value)
    if field == "owner":
        return user_ref(value)
    if field in ("tags", "external_systems"):
        return list(value or [])
    return value


def _current(flow: Flow, field: str):
    if field == "team":
        return team_ref(flow.team)
    if field == "owner":
        return user_ref(flow.owner)
    return getattr(flow, field)


def user_can_edit_flow(user, flow: Flow) -> bool:
    """Operators may edit any flow unless its team restricts edits to members."""
    if not user.has_perm("flows.change_flow"):
        return False
    if user.has_perm("flows.manage_teams"):
        return True
    team = flow.team
    if team is None or not team.restricts_edits:
        return True
    return team.members.filter(pk=user.pk).exists()


def _write(flow_id: int, events: list[tuple[str, dict]], actor) -> Flow:
    written = append_many(
        NewEvent(stream=f"flow:{flow_id}", type=type_, payload=payload, actor=actor_of(actor))
        for type_, payload in events
    )
    # The flow's rows, then whatever other apps keep from flow events (the
    # trigger binding of a published version), in this transaction.
    projectors.project(written)
    return Flow.objects.get(pk=flow_id)


def next_row_id(model: type[models.Model]) -> int:
    """The id a new row of ``model`` will have.

    The id is chosen before the first event (the stream is named after it),
    and the events carry it, so a rebuild restores the same ids."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [model._meta.db_table]
            )
            return cursor.fetchone()[0]
    # SQLite: transactions take the writer lock at BEGIN (IMMEDIATE), so no
    # other writer can pick the same number between this read and the insert.
    last = model.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return last + 1


# What a new flow has where the caller says nothing.
DEFAULT_FACTS = {
    "kind": "ledgerflow",
    "external_platform": "",
    "external_url": "",
    "purpose": "",
    "team": None,
    "criticality": "medium",
    "runbook": "",
    "failure_mode": "",
    "alert_to": "",
    "review_cadence_days": 90,
    "tags": [],
    "external_systems": [],
}


@transaction.atomic
def flow_create(*, actor, data: dict) -> Flow:
    given = {key: value for key, value in data.items() if value is not None}
    merged = {**DEFAULT_FACTS, **given}
    fields = {field: _serialise(field, merged.get(field)) for field in INVENTORY_FIELDS}
    flow_id = next_row_id(Flow)
    events = [("flow.created", {"flow_id": flow_id, "fields": fields})]
    owner = data.get("owner")
    if owner is not None:
        events.append(
            ("flow.owner_changed", {"flow_id": flow_id, "from": None, "to": user_ref(owner)})
        )
    try:
        with transaction.atomic():
            return _write(flow_id, events, actor)
    except IntegrityError:
        if Flow.objects.filter(slug=fields["slug"]).exists():
            raise FlowError(f"The slug {fields['slug']!r} is already taken.") from None
        raise


@transaction.atomic
def flow_update(*, flow: Flow, actor, data: dict, expected_version: int | None = None) -> Flow:
    flow = Flow.objects.select_for_update().get(pk=flow.pk)
    if expected_version is not None and flow.version != expected_version:
        raise StaleEdit(
            "Someone changed this flow while you were editing it. "
            "Review the current values and save again."
        )
    changes = {}
    for field in INVENTORY_FIELDS:
        if field not in data:
            continue
        new = _serialise(field, data[field])
        old = _current(flow, field)
        if new != old:
            changes[field] = {"from": old, "to": new}
    events = []
    if changes:
        events.append(("flow.edited", {"flow_id": flow.pk, "changes": changes}))
    if "owner" in data and user_ref(data["owner"]) != user_ref(flow.owner):
        events.append(
            (
                "flow.owner_changed",
                {"flow_id": flow.pk, "from": user_ref(flow.owner), "to": user_ref(data["owner"])},
            )
        )
    if not events:
        return flow
    try:
        with transaction.atomic():
            return _write(flow.pk, events, actor)
    except IntegrityError:
        if "slug" in changes:
            raise FlowError(f"The slug {changes['slug']['to']!r} is already taken.") from None
        raise


@transaction.atomic
def flow_change_owner(*, flow: Flow, actor, owner) -> Flow:
    return flow_update(flow=flow, actor=actor, data={"owner": owner})


@transaction.atomic
def flow_transition(*, flow: Flow, actor, action: str, reason: str = "") -> Flow:
    if action not in TRANSITIONS:
        raise FlowError(f"Unknown action {action!r}.")
    flow = Flow.objects.select_for_update().get(pk=flow.pk)
    allowed_from, event_type = TRANSITIONS[action]
    if flow.status not in allowed_from:
        raise FlowError(f"A {flow.get_status_display().lower()} flow cannot be {action}d.")
    if action == "activate" and flow.activation_blockers:
        raise ActivationBlocked(flow.activation_blockers)
    payload = {"flow_id": flow.pk, "from": flow.status, "reason": reason}
    return _write(flow.pk, [(event_type, payload)], actor)


@transaction.atomic
def flow_record_review(
    *, flow: Flow, actor, note: str = "", reviewed_on: dt.date | None = None
) -> Flow:
    flow = Flow.objects.select_for_update().get(pk=flow.pk)
    if flow.status == Status.RETIRED:
        raise FlowError("A retired flow is no longer reviewed.")
    reviewed_on = reviewed_on or clock.now().date()
    if reviewed_on > clock.now().date():
        raise FlowError("A review cannot be recorded in the future.")
    payload = {
        "flow_id": flow.pk,
        "reviewed_on": reviewed_on.isoformat(),
        "by": actor.username,
        "note": note,
    }
    return _write(flow.pk, [("flow.reviewed", payload)], actor)


@dataclass(frozen=True)
class DraftRevision:
    """The draft's revision is the seq of its last ``flow.draft_saved`` event
    (0 before any): derived from the log, so a rebuild cannot change it."""

    number: int = 0
    saved_by: str = ""
    saved_at: dt.datetime | None = None


def draft_revision(flow: Flow) -> DraftRevision:
    event = (
        Event.objects.filter(stream=flow.stream, type="flow.draft_saved")
        .order_by("-seq")
        .only("seq", "actor", "occurred_at")
        .first()
    )
    if event is None:
        return DraftRevision()
    return DraftRevision(event.seq, event.actor.removeprefix("user:"), event.occurred_at)


class StaleDraft(FlowError):
    def __init__(self, current: DraftRevision):
        self.current = current
        super().__init__(
            f"{current.saved_by or 'Someone'} saved this draft (revision {current.number}) "
            "after the revision you started from."
        )


@transaction.atomic
def flow_save_draft(*, flow: Flow, actor, graph: dict, base_revision: int | None = None) -> Flow:
    """Keep the graph being edited. Drafts may be incomplete; publishing checks.
    With ``base_revision`` (the editor's), a save on top of someone else's
    newer one is refused with StaleDraft instead of silently replacing it."""
    if flow.kind != "ledgerflow":
        raise FlowError("This automation runs outside Ledgerflow; it has no graph to edit.")
    if not isinstance(graph, dict):
        raise FlowError("A graph is a JSON object with nodes and edges.")
    # Checked before anything is recorded: the log keeps a draft for good.
    refused = graph_module.secret_errors(graph)
    if refused:
        raise SecretInGraph(refused)
    flow = Flow.objects.select_for_update().get(pk=flow.pk)
    if base_revision is not None:
        current = draft_revision(flow)
        if current.number != base_revision:
            raise StaleDraft(current)
    if flow.draft_graph == graph:
        return flow
    return _write(flow.pk, [("flow.draft_saved", {"flow_id": flow.pk, "graph": graph})], actor)


@transaction.atomic
def flow_publish(
    *, flow: Flow, actor, note: str = "", base_revision: int | None = None
) -> FlowVersion:
    """Freeze the draft as the next numbered, immutable version. With
    ``base_revision``, only if the draft is still the one the caller saw."""
    flow = Flow.objects.select_for_update().get(pk=flow.pk)
    if base_revision is not None:
        current = draft_revision(flow)
        if current.number != base_revision:
            raise StaleDraft(current)
    if flow.status == Status.RETIRED:
        raise FlowError("A retired flow cannot be published.")
    if flow.draft_graph is None:
        raise FlowError("There is no draft to publish.")
    try:
        normalised = graph_module.validate(flow.draft_graph)
    except graph_module.InvalidGraph as exc:
        raise InvalidDraft(exc.errors) from None
    number = flow.published_version + 1
    payload = {
        "flow_id": flow.pk,
        "number": number,
        "graph": normalised,
        "graph_hash": graph_module.graph_hash(normalised),
        "note": note,
    }
    _write(flow.pk, [("flow.published", payload)], actor)
    return FlowVersion.objects.get(flow=flow, number=number)


class InvalidDraft(FlowError):
    def __init__(self, errors):
        self.errors = errors
        super().__init__("The draft cannot be published: " + "; ".join(map(str, errors)))


class SecretInGraph(InvalidDraft):
    """The graph holds a literal secret: nothing was saved."""

    def __init__(self, errors):
        self.errors = errors
        FlowError.__init__(self, "The draft was not saved: " + "; ".join(map(str, errors)))
