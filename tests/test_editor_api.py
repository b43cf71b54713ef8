"""The flow editor's API (/api/v1/flows/...): drafts with revisions and
409 on a stale save, validation errors with node and field, publishing with
its diff, versions, and the same permission checks as the pages."""

import pytest
from django.urls import reverse

from flows import services
from flows.teams import team_create
from tests.conftest import login
from tests.engine_helpers import READY

GRAPH = {
    "nodes": [
        {"id": "hook", "type": "trigger.webhook", "position": {"x": 0, "y": 0}},
        {"id": "shape", "type": "transform",
         "config": {"fields": {"amount": "{{ trigger.body.amount }}"}}},
        {"id": "call", "type": "http.request", "config": {"url": "http://127.0.0.1:9/charge"}},
    ],
    "edges": [{"from": "hook", "to": "shape"}, {"from": "shape", "to": "call"}],
}  # fmt: skip


def draft_url(flow):
    return reverse("api:flow_draft", kwargs={"slug": flow.slug})


def put(client, flow, graph, base):
    return client.put(
        draft_url(flow), {"graph": graph, "base_revision": base}, content_type="application/json"
    )


def publish(client, flow, **body):
    url = reverse("api:flow_publish", kwargs={"slug": flow.slug})
    return client.post(url, body, content_type="application/json")


@pytest.fixture
def flow(olga, make_flow):
    return make_flow(olga, owner=olga, **READY)


def test_a_new_flow_has_no_draft_and_revision_zero(client, olga, flow):
    login(client, olga)
    body = client.get(draft_url(flow)).json()
    assert body["graph"] is None and body["revision"] == 0 and body["errors"] == []
    assert body["can_edit"] is True and body["status"] == "draft"


def test_saving_returns_the_new_revision_and_the_drafts_errors(client, olga, flow):
    login(client, olga)
    response = put(client, flow, GRAPH, 0)
    assert response.status_code == 200, response.content
    saved = response.json()
    assert saved["revision"] > 0 and saved["saved_by"] == "olga"
    assert saved["errors"] == []
    again = client.get(draft_url(flow)).json()
    assert again["graph"] == GRAPH and again["revision"] == saved["revision"]


def test_a_stale_save_is_409_naming_who_saved_in_between(client, olga, adam, flow):
    login(client, olga)
    first = put(client, flow, GRAPH, 0).json()["revision"]
    # Adam saves on top of Olga's revision.
    theirs = {**GRAPH, "nodes": GRAPH["nodes"][:2], "edges": GRAPH["edges"][:1]}
    services.flow_save_draft(flow=flow, actor=adam, graph=theirs, base_revision=first)
    response = put(client, flow, {**GRAPH, "settings": {"compensate_on_cancel": False}}, first)
    assert response.status_code == 409
    stale = response.json()
    assert stale["saved_by"] == "adam" and stale["revision"] > first
    assert "adam saved this draft" in stale["detail"]
    flow.refresh_from_db()
    assert flow.draft_graph == theirs  # nothing of the stale save was written
    # Overwriting names Adam's revision.
    assert put(client, flow, GRAPH, stale["revision"]).status_code == 200
    flow.refresh_from_db()
    assert flow.draft_graph == GRAPH


def test_validation_returns_every_error_with_node_and_field(client, olga, flow):
    login(client, olga)
    broken = {
        "nodes": [
            {"id": "hook", "type": "trigger.webhook"},
            # Reads a node that runs after it: only the server knows.
            {"id": "shape", "type": "transform",
             "config": {"fields": {"x": "{{ steps.call.output.id }}"}}},
            {"id": "call", "type": "http.request", "config": {}},
        ],
        "edges": [{"from": "hook", "to": "shape"}, {"from": "shape", "to": "call"}],
    }  # fmt: skip
    url = reverse("api:flow_validate", kwargs={"slug": flow.slug})
    body = client.post(url, {"graph": broken}, content_type="application/json").json()
    assert body["valid"] is False
    errors = {(e["node"], e["field"]) for e in body["errors"]}
    assert ("call", "config.url") in errors  # a missing required field, on its field
    later = [e for e in body["errors"] if e["node"] == "shape"]
    assert later and "steps.call" in later[0]["message"]
    # The save answers with the same errors, and keeps the incomplete draft.
    saved = put(client, flow, broken, 0).json()
    assert {(e["node"], e["field"]) for e in saved["errors"]} == errors
    # With no graph, the saved draft is validated.
    body = client.post(url, {}, content_type="application/json").json()
    assert {(e["node"], e["field"]) for e in body["errors"]} == errors


def test_publishing_returns_the_diff_against_the_last_version(client, olga, flow):
    login(client, olga)
    revision = put(client, flow, GRAPH, 0).json()["revision"]
    first = publish(client, flow, base_revision=revision, note="first")
    assert first.status_code == 200, first.content
    assert first.json()["number"] == 1
    assert first.json()["diff"]["added"] == ["call", "hook", "shape"]
    changed = {
        "nodes": [
            GRAPH["nodes"][0] | {"position": {"x": 500, "y": 5}},  # a move is not a change
            {"id": "shape", "type": "transform", "config": {"fields": {"amount": "2"}},
             "on_failure": "fail_run"},
            {"id": "wait", "type": "delay", "config": {"seconds": 1}},
        ],
        "edges": [{"from": "hook", "to": "shape"}, {"from": "shape", "to": "wait"}],
    }  # fmt: skip
    revision = put(client, flow, changed, revision).json()["revision"]
    second = publish(client, flow, base_revision=revision).json()
    assert second["number"] == 2
    assert second["diff"] == {
        "added": ["wait"],
        "removed": ["call"],
        "changed": [{"id": "shape", "fields": ["on_failure", "config.fields"]}],
        "edges_added": ["shape:out->wait"],
        "edges_removed": ["shape:out->call"],
        "settings_changed": False,
    }
    versions = client.get(reverse("api:flow_versions", kwargs={"slug": flow.slug})).json()
    assert [(v["number"], v["published_by"], v["note"]) for v in versions] == [
        (2, "olga", ""),
        (1, "olga", "first"),
    ]
    one = client.get(reverse("api:flow_version", kwargs={"slug": flow.slug, "number": 1})).json()
    assert [n["id"] for n in one["graph"]["nodes"]] == ["hook", "shape", "call"]
    missing = reverse("api:flow_version", kwargs={"slug": flow.slug, "number": 9})
    assert client.get(missing).status_code == 404


def test_publishing_an_invalid_or_stale_draft_is_refused_with_reasons(client, olga, flow):
    login(client, olga)
    broken = {**GRAPH, "nodes": [*GRAPH["nodes"][:2], {"id": "call", "type": "http.request"}]}
    revision = put(client, flow, broken, 0).json()["revision"]
    response = publish(client, flow, base_revision=revision)
    assert response.status_code == 422
    assert ("call", "config.url") in {(e["node"], e["field"]) for e in response.json()["errors"]}
    stale = publish(client, flow, base_revision=revision - 1)
    assert stale.status_code == 409 and stale.json()["saved_by"] == "olga"
    flow.refresh_from_db()
    assert flow.published_version == 0


def test_reviewers_read_but_may_not_save_or_publish(client, olga, rita, flow):
    login(client, olga)
    revision = put(client, flow, GRAPH, 0).json()["revision"]
    client.logout()
    login(client, rita)
    body = client.get(draft_url(flow)).json()
    assert body["can_edit"] is False and body["graph"] == GRAPH
    assert put(client, flow, GRAPH, revision).status_code == 403
    assert publish(client, flow, base_revision=revision).status_code == 403
    assert client.get(reverse("api:credential_names")).status_code == 403


def test_a_team_that_restricts_edits_keeps_other_operators_out(client, olga, flow):
    from tests.conftest import _user

    team = team_create(name="Ledger", actor=olga, restricts_edits=True)
    services.flow_update(flow=flow, actor=olga, data={"team": team})
    outsider = _user("otto", "Operator")
    login(client, outsider)
    assert client.get(draft_url(flow)).json()["can_edit"] is False
    response = put(client, flow, GRAPH, 0)
    assert response.status_code == 403
    assert "Ledger" in response.json()["error"]["message"]


def test_saving_needs_a_csrf_token_and_a_login(olga, flow):
    from django.test import Client

    anonymous = Client()
    assert put(anonymous, flow, GRAPH, 0).status_code == 401
    strict = Client(enforce_csrf_checks=True)
    login(strict, olga)
    assert put(strict, flow, GRAPH, 0).status_code == 403
    flow.refresh_from_db()
    assert flow.draft_graph is None


def test_credential_names_never_carry_secrets(client, olga, adam):
    from connectors.credentials import store as credentials

    credentials.credential_create(
        actor=adam, name="pay-token", type="bearer", fields={}, secrets={"token": "s3cret-token-x"}
    )
    login(client, olga)
    response = client.get(reverse("api:credential_names"))
    assert response.json() == [{"name": "pay-token", "type": "bearer"}]
    assert b"s3cret" not in response.content


def test_the_catalogue_marks_demo_connectors_out_of_the_palette(client, olga):
    login(client, olga)
    entries = {c["key"]: c for c in client.get(reverse("api:connectors")).json()}
    for key in ("payments.charge", "inventory.reserve", "cpu.work"):
        assert entries[key]["in_palette"] is False
    assert entries["http.request"]["in_palette"] is True
    assert entries["trigger.webhook"]["credential_fields"] == ["credential"]


def test_the_editor_page_loads_the_bundle_without_inline_script(client, olga, rita, flow, settings):
    login(client, olga)
    page = client.get(reverse("flows:editor", kwargs={"slug": flow.slug}))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="editor-config" type="application/json"' in html
    import re

    inline = [s for s in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S) if s[1].strip()]
    assert all('type="application/json"' in attrs for attrs, _ in inline), inline
    detail = client.get(reverse("flows:detail", kwargs={"slug": flow.slug})).content.decode()
    assert reverse("flows:editor", kwargs={"slug": flow.slug}) in detail
    client.logout()
    login(client, rita)
    page = client.get(reverse("flows:editor", kwargs={"slug": flow.slug}))
    assert b'"can_edit": false' in page.content


def test_sticky_notes_are_kept_in_the_draft_and_the_published_version(client, olga, flow):
    from flows.graph import graph_hash, normalise

    login(client, olga)
    note = {"id": "note-1", "text": "Charges go to the demo API.", "position": {"x": 5, "y": 6}}
    revision = put(client, flow, {**GRAPH, "notes": [note]}, 0).json()["revision"]
    assert publish(client, flow, base_revision=revision).status_code == 200
    assert flow.versions.get(number=1).graph["notes"] == [note]
    # Graphs without notes hash as they did before notes existed.
    assert "notes" not in normalise(GRAPH)
    assert graph_hash(normalise(GRAPH)) == graph_hash(normalise({**GRAPH, "notes": []}))
    url = reverse("api:flow_validate", kwargs={"slug": flow.slug})
    bad = {**GRAPH, "notes": [{"id": "note-1"}]}
    errors = client.post(url, {"graph": bad}, content_type="application/json").json()["errors"]
    assert [(e["field"], e["message"]) for e in errors] == [
        ("notes.0", "'text' is a required property")
    ]


def test_export_is_the_management_commands_file_byte_for_byte(client, olga, rita, flow):
    import io

    from django.core.management import call_command

    login(client, olga)
    revision = put(client, flow, GRAPH, 0).json()["revision"]
    publish(client, flow, base_revision=revision)
    client.logout()
    login(client, rita)  # reading is enough
    response = client.get(reverse("api:flow_export", kwargs={"slug": flow.slug}))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{flow.slug}.json"'
    printed = io.StringIO()
    call_command("export_flow", flow.slug, stdout=printed)
    assert response.content.decode() == printed.getvalue()


def test_the_editor_shows_the_inventory_entry_and_why_it_cannot_be_activated(
    client, olga, make_flow
):
    from django.utils.html import strip_tags

    bare = make_flow(olga, slug="bare", owner=None, runbook="", failure_mode="")
    login(client, olga)
    page = client.get(reverse("flows:editor", kwargs={"slug": bare.slug})).content.decode()
    text = " ".join(strip_tags(page).split())
    assert "Owner: none · Runbook (missing) · Failure mode: not stated" in text
    assert (
        "It cannot be activated until its inventory entry has an owner, a runbook and a "
        "failure mode." in text
    )
    assert f'href="{reverse("flows:detail", kwargs={"slug": bare.slug})}#runbook"' in page
    assert 'data-testid="flow-status">Draft<' in page

    ready = make_flow(olga, slug="ready", owner=olga, **READY)
    ready = services.flow_transition(flow=ready, actor=olga, action="activate")
    page = client.get(reverse("flows:editor", kwargs={"slug": ready.slug})).content.decode()
    text = " ".join(strip_tags(page).split())
    assert f"Owner: olga · Runbook · Failure mode: {READY['failure_mode']}" in text
    assert "cannot be activated" not in text and 'data-testid="flow-status">Active<' in page
