"""Writes to teams. Each is an event on the team's stream (``team:<id>``),
projected onto the Team row and its members in the same transaction, so the
log says who created a team, renamed it, changed its members or switched
``restricts_edits`` (which decides who may edit the team's flows)."""

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from flows.models import Team
from flows.projection import project_team, user_ref
from flows.services import FlowError, actor_of, next_row_id
from runs.ground.eventstore import append

# Facts a team.edited event may change, in form order.
TEAM_FIELDS = ("name", "restricts_edits")
MAX_NAME = Team._meta.get_field("name").max_length


class TeamError(FlowError):
    """A team change refused; the message is shown to the user."""


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise TeamError("A team needs a name.")
    if len(name) > MAX_NAME:
        raise TeamError(f"A team's name has at most {MAX_NAME} characters.")
    return name


def _member_refs(users: Iterable[AbstractBaseUser]) -> list[dict]:
    return sorted((user_ref(user) for user in users), key=lambda ref: ref["id"])


def _record(team_id: int, type_: str, payload: dict, *, actor, name: str) -> Team:
    event = append(f"team:{team_id}", type_, {"team_id": team_id, **payload}, actor=actor_of(actor))
    try:
        with transaction.atomic():
            return project_team(event)
    except IntegrityError:
        # The unique name is the last guard against a team of the same name
        # created since the check; the caller's transaction, event included,
        # rolls back with this error.
        raise TeamError(f"The name {name!r} is already taken.") from None


def _refuse_taken_name(name: str, *, other_than: int | None = None) -> None:
    if Team.objects.filter(name=name).exclude(pk=other_than).exists():
        raise TeamError(f"The name {name!r} is already taken.")


@transaction.atomic
def team_create(*, name: str, actor, restricts_edits: bool = False, members: Iterable = ()) -> Team:
    name = _clean_name(name)
    _refuse_taken_name(name)
    team_id = next_row_id(Team)
    payload = {
        "name": name,
        "restricts_edits": bool(restricts_edits),
        "members": _member_refs(members),
    }
    return _record(team_id, "team.created", payload, actor=actor, name=name)


@transaction.atomic
def team_update(
    *, team: Team, actor, name: str | None = None, restricts_edits: bool | None = None
) -> Team:
    """Rename a team or switch whether only its members may edit its flows;
    each change is recorded with its old and new value."""
    team = Team.objects.select_for_update().get(pk=team.pk)
    name = None if name is None else _clean_name(name)
    wanted = {"name": name, "restricts_edits": restricts_edits}
    changes = {
        field: {"from": getattr(team, field), "to": value}
        for field, value in wanted.items()
        if value is not None and value != getattr(team, field)
    }
    if not changes:
        return team
    if "name" in changes:
        _refuse_taken_name(changes["name"]["to"], other_than=team.pk)
    new_name = changes.get("name", {}).get("to", team.name)
    return _record(team.pk, "team.edited", {"changes": changes}, actor=actor, name=new_name)


@transaction.atomic
def team_members_set(*, team: Team, actor, members: Iterable) -> Team:
    """Make ``members`` the team's members; the event names who was added
    and who was removed."""
    team = Team.objects.select_for_update().get(pk=team.pk)
    wanted = {user.pk: user for user in members}
    current = {user.pk: user for user in team.members.all()}
    added = [user for pk, user in wanted.items() if pk not in current]
    removed = [user for pk, user in current.items() if pk not in wanted]
    if not added and not removed:
        return team
    payload = {"added": _member_refs(added), "removed": _member_refs(removed)}
    return _record(team.pk, "team.members_changed", payload, actor=actor, name=team.name)


@transaction.atomic
def team_save(*, team: Team | None, actor, name: str, restricts_edits: bool, members) -> Team:
    """What the team form does: create the team, or update its facts and
    members, in one transaction."""
    if team is None:
        return team_create(name=name, actor=actor, restricts_edits=restricts_edits, members=members)
    team = team_update(team=team, actor=actor, name=name, restricts_edits=restricts_edits)
    return team_members_set(team=team, actor=actor, members=members)
