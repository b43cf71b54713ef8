"""Teams are written through services that record each change as an event on
the team's stream: who created it, renamed it, changed its members, or
switched ``restricts_edits`` (which decides who may edit the team's flows)."""

import importlib
import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from flows import services
from flows.models import Team
from flows.teams import TeamError, team_create, team_members_set, team_update
from runs.ground.models import Event, Stream
from tests.conftest import flow_data, login


def team_events(team: Team) -> list[tuple[str, str, dict]]:
    events = Event.objects.filter(stream=f"team:{team.pk}").order_by("seq")
    return [(event.type, event.actor, event.payload) for event in events]


def members_of(team: Team) -> list[str]:
    return sorted(team.members.values_list("username", flat=True))


def test_creating_a_team_on_its_page_records_who_created_it_and_its_facts(client, adam, olga):
    response = login(client, adam).post(
        reverse("flows:teams"),
        {"name": "Treasury", "restricts_edits": "on", "members": [olga.pk]},
    )
    assert response.status_code == 302
    team = Team.objects.get(name="Treasury")
    assert team.restricts_edits and members_of(team) == ["olga"]
    assert team_events(team) == [
        (
            "team.created",
            "user:adam",
            {
                "team_id": team.pk,
                "name": "Treasury",
                "restricts_edits": True,
                "members": [{"id": olga.pk, "username": "olga"}],
            },
        )
    ]


def test_switching_restricts_edits_on_the_edit_page_is_audited_with_old_and_new_value(
    client, adam, olga
):
    team = team_create(name="Payments", actor=adam, members=[olga])
    response = login(client, adam).post(
        reverse("flows:team_edit", args=[team.pk]),
        {"name": "Payments", "restricts_edits": "on", "members": [olga.pk]},
    )
    assert response.status_code == 302
    assert Team.objects.get(pk=team.pk).restricts_edits
    assert team_events(team)[1:] == [
        (
            "team.edited",
            "user:adam",
            {"team_id": team.pk, "changes": {"restricts_edits": {"from": False, "to": True}}},
        )
    ]
    # And back: lifting the restriction is as visible as setting it.
    team_update(team=team, actor=adam, restricts_edits=False)
    assert team_events(team)[-1][2]["changes"] == {"restricts_edits": {"from": True, "to": False}}


def test_renaming_records_the_old_and_new_name(adam):
    team = team_create(name="Ops", actor=adam)
    team_update(team=team, actor=adam, name="  Operations  ")
    assert Team.objects.get(pk=team.pk).name == "Operations"
    assert team_events(team)[-1][:2] == ("team.edited", "user:adam")
    assert team_events(team)[-1][2]["changes"] == {"name": {"from": "Ops", "to": "Operations"}}


def test_setting_members_records_who_was_added_and_who_was_removed(adam, olga, rita, nora):
    team = team_create(name="Payments", actor=adam, members=[olga, rita])
    team_members_set(team=team, actor=adam, members=[rita, nora])
    assert members_of(team) == ["nora", "rita"]
    type_, actor, payload = team_events(team)[-1]
    assert (type_, actor) == ("team.members_changed", "user:adam")
    assert payload == {
        "team_id": team.pk,
        "added": [{"id": nora.pk, "username": "nora"}],
        "removed": [{"id": olga.pk, "username": "olga"}],
    }


def test_saving_a_team_unchanged_records_nothing(client, adam, olga):
    team = team_create(name="Payments", actor=adam, members=[olga])
    response = login(client, adam).post(
        reverse("flows:team_edit", args=[team.pk]), {"name": "Payments", "members": [olga.pk]}
    )
    assert response.status_code == 302
    assert len(team_events(team)) == 1


def test_a_taken_name_is_refused_and_records_nothing(client, adam):
    taken = team_create(name="Payments", actor=adam)
    other = team_create(name="Growth", actor=adam)
    with pytest.raises(TeamError, match="already taken"):
        team_create(name="Payments", actor=adam)
    with pytest.raises(TeamError, match="already taken"):
        team_update(team=other, actor=adam, name="Payments")
    with pytest.raises(TeamError, match="needs a name"):
        team_create(name="   ", actor=adam)
    response = login(client, adam).post(
        reverse("flows:team_edit", args=[other.pk]), {"name": "Payments"}
    )
    assert response.status_code == 200
    assert "already taken" in response.content.decode()
    assert Team.objects.get(pk=other.pk).name == "Growth"
    assert [len(team_events(team)) for team in (taken, other)] == [1, 1]
    assert Stream.objects.filter(name__startswith="team:").count() == 2


def test_teams_rebuild_from_their_events_and_flows_keep_their_team(adam, olga, rita):
    payments = team_create(name="Payments", actor=adam, restricts_edits=True, members=[olga])
    team_update(team=payments, actor=adam, name="Payments EU")
    team_members_set(team=payments, actor=adam, members=[olga, rita])
    growth = team_create(name="Growth", actor=adam)
    flow = services.flow_create(actor=adam, data=flow_data(team=payments))
    Team.objects.filter(pk=growth.pk).update(restricts_edits=True)
    Team.objects.get(pk=payments.pk).members.remove(rita)

    call_command("rebuild_projections", stdout=io.StringIO())

    rebuilt = Team.objects.get(pk=payments.pk)
    assert (rebuilt.name, rebuilt.restricts_edits) == ("Payments EU", True)
    assert members_of(rebuilt) == ["olga", "rita"]
    assert not Team.objects.get(pk=growth.pk).restricts_edits
    flow.refresh_from_db()
    assert flow.team_id == payments.pk


def test_a_team_written_before_team_events_survives_a_rebuild_once_migrated(adam, olga):
    old = Team.objects.create(name="Legacy", restricts_edits=True)
    old.members.add(olga)
    migration = importlib.import_module("flows.migrations.0004_record_teams")
    migration.record(None, None)
    migration.record(None, None)  # a second run records nothing more
    assert team_events(old) == [
        (
            "team.created",
            "system:migration",
            {
                "team_id": old.pk,
                "name": "Legacy",
                "restricts_edits": True,
                "members": [{"id": olga.pk, "username": "olga"}],
            },
        )
    ]
    stray = Team.objects.create(name="Never recorded")
    call_command("rebuild_projections", stdout=io.StringIO())
    assert members_of(Team.objects.get(pk=old.pk)) == ["olga"]
    # The flows' rule: a row no stream accounts for is not a projection.
    assert not Team.objects.filter(pk=stray.pk).exists()


def test_the_edit_page_shows_the_team_as_recorded(client, adam, olga, rita):
    team = team_create(name="Payments", actor=adam, restricts_edits=True, members=[olga])
    html = login(client, adam).get(reverse("flows:team_edit", args=[team.pk])).content.decode()
    assert 'value="Payments"' in html
    checked = [line for line in html.splitlines() if "checked" in line]
    assert any('name="restricts_edits"' in line for line in checked)
    assert any(f'value="{olga.pk}"' in line for line in checked)
    assert not any(f'value="{rita.pk}"' in line for line in checked)
