import csv
import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from flows import services
from flows.models import Flow
from flows.teams import team_create, team_members_set
from runs.ground import clock
from runs.ground.models import Event
from tests.conftest import login

VALID_FORM = {
    "name": "Refund approvals",
    "slug": "",
    "kind": "ledgerflow",
    "external_platform": "",
    "external_url": "",
    "purpose": "Big refunds wait for a human.",
    "owner": "",
    "team": "",
    "criticality": "high",
    "runbook": "",
    "failure_mode": "",
    "review_cadence_days": "30",
    "tags": "refunds, approvals, refunds",
    "external_systems": "Payments API",
}


def types(flow):
    return list(
        Event.objects.filter(stream=flow.stream).order_by("seq").values_list("type", flat=True)
    )


def test_creating_a_flow_records_an_event_and_projects_the_row(client, olga):
    login(client, olga)
    response = client.post(reverse("flows:create"), {**VALID_FORM, "owner": olga.pk})
    flow = Flow.objects.get(slug="refund-approvals")
    assert response.status_code == 302 and response.url == reverse("flows:detail", args=[flow.slug])
    assert flow.status == "draft" and flow.owner == olga
    assert flow.tags == ["refunds", "approvals"]
    assert types(flow) == ["flow.created", "flow.owner_changed"]
    created = Event.objects.get(stream=flow.stream, seq=1)
    assert created.actor == "user:olga"
    assert created.payload["fields"]["criticality"] == "high"


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"name": ""}, "name", "required"),
        ({"criticality": "apocalyptic"}, "criticality", "valid choice"),
        ({"review_cadence_days": "-3"}, "review_cadence_days", "greater than or equal to 1"),
        ({"review_cadence_days": "soon"}, "review_cadence_days", "whole number"),
        ({"slug": "no spaces!"}, "slug", "valid"),
        ({"slug": "audit"}, "slug", "reserved"),
        ({"owner": "999999"}, "owner", "valid choice"),
        ({"kind": "external"}, "external_platform", "Say where"),
        ({"kind": "external", "external_platform": "Zapier"}, "external_url", "Link"),
        ({"external_url": "javascript:alert(1)"}, "external_url", "valid URL"),
        ({"tags": "x" * 61}, "tags", "longer than 60"),
    ],
)
def test_bad_input_gives_field_errors_and_writes_nothing(client, olga, change, field, message):
    login(client, olga)
    response = client.post(reverse("flows:create"), {**VALID_FORM, **change})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors and message in " ".join(errors[field])
    assert not Flow.objects.exists() and not Event.objects.exists()


def test_duplicate_slug_is_a_field_error(client, olga, make_flow):
    make_flow(olga, slug="refund-approvals")
    login(client, olga)
    response = client.post(reverse("flows:create"), VALID_FORM)
    assert "already taken" in " ".join(response.context["form"].errors["slug"])


def test_activation_needs_owner_runbook_and_failure_mode(client, olga, make_flow):
    flow = make_flow(olga)
    login(client, olga)
    page = client.get(reverse("flows:detail", args=[flow.slug])).content.decode()
    assert "needs <strong>an owner</strong>, <strong>a runbook</strong> and" in page
    response = client.post(reverse("flows:transition", args=[flow.slug, "activate"]), follow=True)
    assert "Cannot activate: this flow needs an owner, a runbook and a failure mode." in (
        response.content.decode()
    )
    flow.refresh_from_db()
    assert flow.status == "draft" and types(flow) == ["flow.created"]


def test_an_inactive_owner_blocks_activation(olga, ready_flow):
    olga.is_active = False
    olga.save()
    with pytest.raises(services.ActivationBlocked, match="an active owner"):
        services.flow_transition(flow=ready_flow, actor=olga, action="activate")


def test_lifecycle_activate_pause_resume_retire(client, olga, ready_flow):
    login(client, olga)
    for action in ("activate", "pause", "activate", "retire"):
        client.post(reverse("flows:transition", args=[ready_flow.slug, action]))
    ready_flow.refresh_from_db()
    assert ready_flow.status == "retired"
    assert types(ready_flow)[-4:] == [
        "flow.activated",
        "flow.paused",
        "flow.activated",
        "flow.retired",
    ]
    response = client.post(
        reverse("flows:transition", args=[ready_flow.slug, "activate"]), follow=True
    )
    assert "A retired flow cannot be activated." in response.content.decode()


def test_editing_records_only_what_changed(client, olga, ready_flow, rita):
    login(client, olga)
    form = client.get(reverse("flows:edit", args=[ready_flow.slug])).context["form"]
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update(tags=", ".join(data["tags"]), external_systems=", ".join(data["external_systems"]))
    data.update(criticality="critical", owner=rita.pk, team="")
    response = client.post(reverse("flows:edit", args=[ready_flow.slug]), data)
    assert response.status_code == 302
    edited = Event.objects.filter(stream=ready_flow.stream).order_by("-seq")[:2]
    owner_changed, edit = edited
    assert edit.payload["changes"] == {"criticality": {"from": "high", "to": "critical"}}
    assert owner_changed.payload["to"]["username"] == "rita"
    ready_flow.refresh_from_db()
    assert (ready_flow.criticality, ready_flow.owner) == ("critical", rita)


def test_a_stale_edit_is_refused_not_lost(client, olga, ready_flow):
    login(client, olga)
    form = client.get(reverse("flows:edit", args=[ready_flow.slug])).context["form"]
    services.flow_update(flow=ready_flow, actor=olga, data={"purpose": "Changed meanwhile"})
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update(tags="", external_systems="", purpose="My edit")
    response = client.post(reverse("flows:edit", args=[ready_flow.slug]), data)
    assert "Someone changed this flow" in response.content.decode()
    ready_flow.refresh_from_db()
    assert ready_flow.purpose == "Changed meanwhile"


def test_owner_change_and_review_inline_with_htmx(client, olga, rita, ready_flow):
    login(client, olga)
    htmx = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "facts"}
    response = client.post(
        reverse("flows:change_owner", args=[ready_flow.slug]), {"owner": rita.pk}, **htmx
    )
    assert response.status_code == 200 and "Owner changed." in response.content.decode()
    assert "<html" not in response.content.decode()
    response = client.post(
        reverse("flows:record_review", args=[ready_flow.slug]), {"note": "All good"}, **htmx
    )
    assert "Review recorded." in response.content.decode()
    ready_flow.refresh_from_db()
    assert ready_flow.owner == rita and ready_flow.last_reviewed_on == clock.now().date()
    assert types(ready_flow)[-2:] == ["flow.owner_changed", "flow.reviewed"]
    bad = client.post(reverse("flows:change_owner", args=[ready_flow.slug]), {"owner": "x"}, **htmx)
    assert bad.status_code == 422 and "Owner:" in bad.content.decode()


def test_flow_page_shows_history_and_sanitised_runbook(client, olga, make_flow):
    flow = make_flow(olga, runbook="# Steps\n<script>alert(1)</script>\n\n**Replay** it")
    login(client, olga)
    page = client.get(reverse("flows:detail", args=[flow.slug])).content.decode()
    assert "<strong>Replay</strong>" in page and "<script>alert(1)" not in page
    assert "created “Order fulfilment”" in page and "olga" in page


def test_a_restricted_team_limits_edits_to_its_members(client, olga, adam, make_flow):
    team = team_create(name="Payments", actor=adam, restricts_edits=True)
    flow = make_flow(adam, team=team)
    login(client, olga)
    assert client.get(reverse("flows:edit", args=[flow.slug])).status_code == 403
    assert client.post(reverse("flows:transition", args=[flow.slug, "retire"])).status_code == 403
    team_members_set(team=team, actor=adam, members=[olga])
    assert client.get(reverse("flows:edit", args=[flow.slug])).status_code == 200
    client.logout()
    login(client, adam)
    team_members_set(team=team, actor=adam, members=[])
    assert client.get(reverse("flows:edit", args=[flow.slug])).status_code == 200


def test_inventory_filters_search_and_sort(client, rita, olga, make_flow):
    make_flow(olga, name="Order fulfilment", slug="a", criticality="low", owner=olga)
    make_flow(olga, name="CRM sync", slug="b", criticality="critical", tags=["sync"])
    make_flow(
        olga, name="Lead zap", slug="c", kind="external", external_platform="Zapier",
        external_url="https://zapier.example.com/z/1", external_systems=["Salesforce"],
    )  # fmt: skip
    login(client, rita)

    def names(**params):
        response = client.get(reverse("flows:inventory"), params)
        return [f.name for f in response.context["flows"]]

    assert names() == ["CRM sync", "Lead zap", "Order fulfilment"]
    assert names(q="salesforce") == ["Lead zap"]
    assert names(q="sync") == ["CRM sync"]
    assert names(owner="olga") == ["Order fulfilment"]
    assert names(owner="none", sort="-name") == ["Lead zap", "CRM sync"]
    assert names(kind="external") == ["Lead zap"]
    assert names(sort="criticality")[0] == "CRM sync"
    assert names(status="active") == []
    assert names(sort="nonsense", criticality="bogus") == [
        "CRM sync",
        "Lead zap",
        "Order fulfilment",
    ]
    partial = client.get(
        reverse("flows:inventory"), {"q": "zap"}, HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="inventory-results",
    )  # fmt: skip
    assert "<html" not in partial.content.decode() and "Lead zap" in partial.content.decode()


def test_audit_page_and_csv_list_what_is_missing(client, adam, olga, make_flow, ready_flow):
    make_flow(olga, name="=HYPERLINK(1)", slug="no-facts")
    services.flow_record_review(
        flow=ready_flow, actor=olga, reviewed_on=clock.now().date() - dt.timedelta(days=200)
    )
    olga.is_active = False
    olga.save()
    login(client, adam)
    page = client.get(reverse("flows:audit")).content.decode()
    assert "no owner" in page and "no runbook" in page and "no failure mode" in page
    assert "owner olga is inactive" in page and "review overdue since" in page
    response = client.get(reverse("flows:audit_csv"))
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by_slug = {row["slug"]: row for row in rows}
    assert by_slug["no-facts"]["name"] == "'=HYPERLINK(1)"
    assert "no owner; no runbook; no failure mode" == by_slug["no-facts"]["problems"]
    assert "owner olga is inactive" in by_slug[ready_flow.slug]["problems"]


def test_review_cannot_be_in_the_future(olga, ready_flow):
    with pytest.raises(services.FlowError, match="future"):
        services.flow_record_review(
            flow=ready_flow, actor=olga, reviewed_on=clock.now().date() + dt.timedelta(days=1)
        )


def test_rebuild_projections_derives_the_same_rows(olga, rita, adam, make_flow, ready_flow):
    team = team_create(name="Ops", actor=adam)
    other = make_flow(adam, name="Zap", slug="zap", team=team, owner=rita)
    services.flow_transition(flow=ready_flow, actor=olga, action="activate")
    services.flow_update(flow=other, actor=adam, data={"tags": ["x", "y"], "criticality": "low"})
    services.flow_record_review(flow=other, actor=rita, note="ok")
    services.flow_transition(flow=other, actor=adam, action="retire")
    fields = [f.attname for f in Flow._meta.concrete_fields]
    before = list(Flow.objects.order_by("pk").values(*fields))
    Flow.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert list(Flow.objects.order_by("pk").values(*fields)) == before
