"""Every URL pattern, every role: allowed or denied, and anonymous users are
sent to the login page. A new URL without a row here fails the suite."""

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse

from approvals import links
from connectors.credentials import store as credentials
from connectors.triggers import backfills, testhooks
from connectors.triggers.models import Binding
from flows import services, testruns
from flows.models import Flow, Team
from runs import driver
from runs.ground import clock
from tests.approval_helpers import INPUT, approval_flow, task_of
from tests.conftest import PASSWORD, _user
from tests.engine_helpers import READY, chain, publish

OPERATOR, REVIEWER, ADMIN, NOROLE = "operator", "reviewer", "admin", "norole"
EVERY_ROLE = {OPERATOR, REVIEWER, ADMIN, NOROLE}
PUBLIC = "public"
# Probes for process managers: open to all, 503 when the platform is not ready.
PROBE = "probe"
# A bearer token, not a session, opens it: every role and nobody get 401 (or
# 404 while no token is configured).
TOKEN = "token"
# django-ninja's mount point: it only anchors the API's paths (404 to all).
ANCHOR = "anchor"
# API endpoints answer an anonymous caller 401 instead of sending a browser
# to the login page.
API_ENDPOINTS = {
    "api:connectors",
    "api:connector_test_connection",
    "api:flow_draft",
    "api:flow_draft_save",
    "api:flow_validate",
    "api:flow_publish",
    "api:flow_versions",
    "api:flow_version",
    "api:flow_export",
    "api:credential_names",
    "api:expression_preview",
    "api:flow_test_runs",
    "api:flow_test_run_list",
    "api:flow_test_run",
    "api:run_diagram",
    "api:step_replay",
    "api:dead_letters_replay",
    "api:dead_letters_replay_preview",
    "api:run",
    "api:runs",
    "api:dead_letters",
    "api:run_start",
    "api:approval_tasks",
    "api:approval_decide",
}

# Answers that come after the permission check, to the matrix's bare
# request: the run's "wait" step is no dead letter (409), a preview names no
# dead letter (400).
PAST_THE_CHECK = {"api:step_replay": (409,), "api:dead_letters_replay_preview": (400,)}

# url name -> (method, roles allowed). PUBLIC pages are open to anonymous users.
MATRIX = {
    "home": ("GET", EVERY_ROLE),
    "login": ("GET", PUBLIC),
    "logout": ("POST", EVERY_ROLE),
    "healthz": ("GET", PROBE),
    "readyz": ("GET", PROBE),
    "metrics": ("GET", TOKEN),
    "dashboard": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    # Everyone's own API tokens (a token adds no right its role lacks).
    "profile": ("GET", EVERY_ROLE),
    "profile_token_create": ("POST", EVERY_ROLE),
    "profile_token_revoke": ("POST", EVERY_ROLE),
    "audit_log": ("GET", {ADMIN}),
    "audit_log_moved": ("GET", {ADMIN}),
    "audit_export": ("GET", {ADMIN}),
    "lockouts": ("GET", {ADMIN}),
    "lockout_unlock": ("POST", {ADMIN}),
    "flows:inventory": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "flows:create": ("GET", {OPERATOR, ADMIN}),
    "flows:audit": ("GET", {ADMIN}),
    "flows:audit_csv": ("GET", {ADMIN}),
    "flows:teams": ("GET", {ADMIN}),
    "flows:team_edit": ("GET", {ADMIN}),
    "flows:detail": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "flows:edit": ("GET", {OPERATOR, ADMIN}),
    "flows:change_owner": ("POST", {OPERATOR, ADMIN}),
    "flows:record_review": ("POST", {OPERATOR, ADMIN}),
    "flows:transition": ("POST", {OPERATOR, ADMIN}),
    "flows:graph": ("GET", {OPERATOR, ADMIN}),
    # Reviewers see the canvas read-only.
    "flows:editor": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "flows:start_run": ("POST", {OPERATOR, ADMIN}),
    "runs:detail": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "runs:cancel": ("POST", {OPERATOR, ADMIN}),
    "runs:replay": ("POST", {OPERATOR, ADMIN}),
    "runs:discard": ("POST", {OPERATOR, ADMIN}),
    "runs:replay_run": ("POST", {OPERATOR, ADMIN}),
    "runs:resume": ("POST", {OPERATOR, ADMIN}),
    "runs:list": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "runs:dead_letters": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "runs:dead_letters_replay": ("POST", {OPERATOR, ADMIN}),
    "runs:dead_letter": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "runs:dead_letters_preview": ("GET", {OPERATOR, ADMIN}),
    "runs:dead_letters_assign": ("POST", {OPERATOR, ADMIN}),
    "runs:dead_letters_annotate": ("POST", {OPERATOR, ADMIN}),
    "runs:dead_letters_csv": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "runs:dead_letters_jsonl": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "approvals:inbox": ("GET", {REVIEWER, ADMIN}),
    "approvals:badge": ("GET", {REVIEWER, ADMIN}),
    "approvals:queues": ("GET", {ADMIN}),
    "approvals:calendars": ("GET", {ADMIN}),
    "approvals:link": ("GET", {REVIEWER, ADMIN}),
    "approvals:task": ("GET", {REVIEWER, ADMIN}),
    "approvals:claim": ("POST", {REVIEWER, ADMIN}),
    "approvals:release": ("POST", {REVIEWER, ADMIN}),
    "approvals:comment": ("POST", {REVIEWER, ADMIN}),
    "approvals:reassign": ("POST", {ADMIN}),
    "approvals:decide": ("POST", {REVIEWER, ADMIN}),
    "connectors:catalogue": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "api:api-root": ("GET", ANCHOR),
    "api:openapi-json": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "api:openapi-view": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "api:connectors": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "api:connector_test_connection": ("POST", {OPERATOR, ADMIN}),
    "api:flow_draft": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "api:flow_draft_save": ("PUT", {OPERATOR, ADMIN}),
    "api:flow_validate": ("POST", {OPERATOR, REVIEWER, ADMIN}),
    "api:flow_publish": ("POST", {OPERATOR, ADMIN}),
    "api:flow_versions": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "api:flow_version": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "api:flow_export": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "api:credential_names": ("GET", {OPERATOR, ADMIN}),
    "api:expression_preview": ("POST", {OPERATOR, ADMIN}),
    # Test runs of the draft: running one is editing; reading needs runs.
    "api:flow_test_runs": ("POST", {OPERATOR, ADMIN}),
    "api:flow_test_run_list": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "api:flow_test_run": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    # The run page's diagram, with the run page's check.
    "api:run_diagram": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    # Dead-letter replay (on the run's own version or the newest), with the
    # replay page's check, and its preview.
    "api:step_replay": ("POST", {OPERATOR, ADMIN}),
    "api:dead_letters_replay": ("POST", {OPERATOR, ADMIN}),
    "api:dead_letters_replay_preview": ("GET", {OPERATOR, ADMIN}),
    "api:run": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "api:runs": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "api:dead_letters": ("GET", {OPERATOR, ADMIN}),
    "api:run_start": ("POST", {OPERATOR, ADMIN}),
    "api:approval_tasks": ("GET", {REVIEWER, ADMIN}),
    # An admin may decide, but this task waits in the reviewers' queue: the
    # answer is the task's refusal (403 "refused"), not the role's.
    "api:approval_decide": ("POST", {REVIEWER, ADMIN}),
    "breakers:list": ("GET", {OPERATOR, ADMIN}),
    "breakers:reset": ("POST", {ADMIN}),
    "credentials:list": ("GET", {OPERATOR, ADMIN}),
    "credentials:create": ("GET", {OPERATOR, ADMIN}),
    "credentials:edit": ("GET", {OPERATOR, ADMIN}),
    "credentials:delete": ("POST", {OPERATOR, ADMIN}),
    # The token in the URL is the credential: no login, no CSRF.
    "triggers:webhook": ("POST", PUBLIC),
    # A webhook draft's test URL: its token is the credential too.
    "triggers:test_webhook": ("POST", PUBLIC),
    "triggers:topics": ("GET", {OPERATOR, REVIEWER, ADMIN}),
    "triggers:rotate_webhook": ("POST", {OPERATOR, ADMIN}),
    "triggers:backfill_new": ("GET", {OPERATOR, ADMIN}),
    "triggers:backfill": ("GET", {OPERATOR, ADMIN}),
    "triggers:backfill_cancel": ("POST", {OPERATOR, ADMIN}),
}


def _pattern_names(patterns, namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = pattern.namespace or namespace
            yield from _pattern_names(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern):
            assert pattern.name, f"URL pattern {pattern.pattern} has no name"
            yield f"{namespace}:{pattern.name}" if namespace else pattern.name


def test_every_url_pattern_is_in_the_matrix():
    names = set(_pattern_names(get_resolver().url_patterns))
    assert names - MATRIX.keys() == set(), "add these URL names to the roles matrix"
    assert MATRIX.keys() - names == set(), "the matrix names URLs that no longer exist"


@pytest.fixture
def personas(db):
    return {
        OPERATOR: _user("olga", "Operator"),
        REVIEWER: _user("rita", "Reviewer"),
        ADMIN: _user("adam", "Admin"),
        NOROLE: _user("nora", None),
    }


@pytest.fixture
def url_for(personas, make_flow):
    flow = make_flow(personas[ADMIN], owner=personas[ADMIN], **READY)
    team = Team.objects.create(name="Payments")
    graph = chain({"id": "wait", "type": "delay", "config": {"seconds": 600}})
    publish(personas[ADMIN], graph, slug=flow.slug)
    flow.refresh_from_db()
    run = driver.start_run(flow=flow, input={}, actor="user:adam")
    approval = driver.start_run(
        flow=approval_flow(personas[ADMIN], slug="matrix-approvals"), input=INPUT,
        actor="user:adam",
    )  # fmt: skip
    task = task_of(approval)
    token = links.make_token(task_id=task.pk, user_id=personas[REVIEWER].pk)
    task_kwargs = {"task_id": task.pk}
    credential = credentials.credential_create(
        actor=personas[ADMIN], name="matrix-token", type="bearer", fields={},
        secrets={"token": "matrix-secret-token"},
    )  # fmt: skip
    hook = make_flow(personas[ADMIN], name="Hook", slug="hook", owner=personas[ADMIN], **READY)
    publish(
        personas[ADMIN],
        {"nodes": [{"id": "in", "type": "trigger.webhook"}], "edges": []},
        slug=hook.slug,
    )
    hook_token = Binding.objects.get(flow=hook).token
    trigger = {"id": "at", "type": "trigger.schedule", "config": {"cron": "0 * * * *"}}
    with clock.frozen_at(dt.datetime(2026, 6, 1, 0, 30, tzinfo=dt.UTC)):
        nightly = publish(personas[ADMIN], {"nodes": [trigger], "edges": []}, slug="nightly")
    with clock.frozen_at(dt.datetime(2026, 6, 1, 1, 0, tzinfo=dt.UTC)):
        backfill = backfills.backfill_request(
            nightly, start=dt.datetime(2026, 5, 31, tzinfo=dt.UTC),
            end=dt.datetime(2026, 5, 31, 1, tzinfo=dt.UTC), max_in_flight=1, actor=personas[ADMIN],
        )  # fmt: skip
    backfill_kwargs = {"slug": nightly.slug, "backfill_id": backfill.pk}
    test_run = testruns.test_run_start(flow=flow, actor="user:adam", input={})
    kwargs = {
        "triggers:webhook": {"token": hook_token},
        "triggers:test_webhook": {"token": testhooks.token_for(hook.pk)},
        "api:flow_test_runs": {"slug": flow.slug},
        "api:flow_test_run_list": {"slug": flow.slug},
        "api:flow_test_run": {"slug": flow.slug, "run_id": test_run.pk},
        "triggers:rotate_webhook": {"slug": hook.slug},
        "triggers:backfill_new": {"slug": nightly.slug},
        "triggers:backfill": backfill_kwargs,
        "triggers:backfill_cancel": backfill_kwargs,
        "flows:detail": {"slug": flow.slug},
        "flows:edit": {"slug": flow.slug},
        "flows:change_owner": {"slug": flow.slug},
        "flows:record_review": {"slug": flow.slug},
        "flows:transition": {"slug": flow.slug, "action": "pause"},
        "flows:team_edit": {"team_id": team.pk},
        "flows:graph": {"slug": flow.slug},
        "flows:editor": {"slug": flow.slug},
        "api:flow_draft": {"slug": flow.slug},
        "api:flow_draft_save": {"slug": flow.slug},
        "api:flow_validate": {"slug": flow.slug},
        "api:flow_publish": {"slug": flow.slug},
        "api:flow_versions": {"slug": flow.slug},
        "api:flow_version": {"slug": flow.slug, "number": 1},
        "api:flow_export": {"slug": flow.slug},
        "api:expression_preview": {"slug": flow.slug},
        "flows:start_run": {"slug": flow.slug},
        "runs:detail": {"run_id": run.pk},
        "api:run_diagram": {"run_id": run.pk},
        "api:step_replay": {"run_id": run.pk, "node": "wait"},
        "api:run": {"run_id": run.pk},
        "api:run_start": {"slug": flow.slug},
        "api:approval_decide": task_kwargs,
        "profile_token_revoke": {"token_id": 999999},
        "runs:cancel": {"run_id": run.pk},
        "runs:replay": {"run_id": run.pk, "node": "wait"},
        "runs:discard": {"run_id": run.pk, "node": "wait"},
        "runs:dead_letter": {"run_id": run.pk, "node": "wait"},
        "runs:replay_run": {"run_id": run.pk},
        "runs:resume": {"run_id": run.pk},
        "approvals:link": {"token": token},
        **{
            f"approvals:{name}": task_kwargs
            for name in ("task", "claim", "release", "comment", "reassign", "decide")
        },
        "api:connector_test_connection": {"key": "payments.charge"},
        "credentials:edit": {"credential_id": credential.pk},
        "credentials:delete": {"credential_id": credential.pk},
        "audit_export": {"fmt": "csv"},
    }
    return lambda name: reverse(name, kwargs=kwargs.get(name))


def _draft_body(url):
    """A save of the flow's current draft on its current revision."""
    flow = Flow.objects.get(slug=resolve(url).kwargs["slug"])
    return {"graph": flow.draft_graph, "base_revision": services.draft_revision(flow).number}


def _preview_body(url):
    """An expression at the last node of the flow's draft."""
    flow = Flow.objects.get(slug=resolve(url).kwargs["slug"])
    return {"node": flow.draft_graph["nodes"][-1]["id"], "expression": "{{ 1 + 1 }}"}


def _request(client, method, url, name=""):
    if method == "PUT":
        return client.put(url, _draft_body(url), content_type="application/json")
    if name == "api:expression_preview":
        return client.post(url, _preview_body(url), content_type="application/json")
    if name == "api:approval_decide":
        return client.post(url, {"decision": "rejected"}, content_type="application/json")
    if name == "profile_token_create":
        return client.post(url, {"name": "matrix", "scope": "read", "expires": "30"})
    if method == "POST" and name in API_ENDPOINTS:
        return client.post(url, {}, content_type="application/json")  # API clients send JSON
    return client.post(url) if method == "POST" else client.get(url)


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_anonymous_users_are_sent_to_login(client, url_for, name):
    method, allowed = MATRIX[name]
    response = _request(client, method, url_for(name), name)
    if allowed == PUBLIC:
        assert response.status_code in (200, 202, 503), response.status_code
    elif allowed == PROBE:
        assert response.status_code in (200, 503), response.status_code
    elif allowed == TOKEN:
        assert response.status_code in (401, 404), response.status_code
    elif allowed == ANCHOR:
        assert response.status_code == 404
    elif name in API_ENDPOINTS:
        assert response.status_code == 401
    else:
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("role", sorted(EVERY_ROLE))
@pytest.mark.parametrize("name", sorted(MATRIX))
def test_role_is_allowed_or_denied(client, personas, url_for, name, role):
    method, allowed = MATRIX[name]
    user: User = personas[role]
    client.login(username=user.username, password=PASSWORD)
    response = _request(client, method, url_for(name), name)
    if allowed == PUBLIC:
        assert response.status_code < 500
    elif allowed == PROBE:
        assert response.status_code in (200, 503), response.status_code
    elif allowed == TOKEN:
        assert response.status_code in (401, 404), response.status_code
    elif allowed == ANCHOR:
        assert response.status_code == 404
    elif role in allowed and name in API_ENDPOINTS:
        refused = response.status_code == 403 and response.json()["error"]["code"] == "refused"
        past = response.status_code in PAST_THE_CHECK.get(name, ())
        assert response.status_code in (200, 201) or refused or past, response.content
    elif role in allowed:
        assert response.status_code in (200, 302, *PAST_THE_CHECK.get(name, ())), (
            response.status_code
        )
        if response.status_code == 302:
            assert not response.url.startswith(reverse("login")) or name == "logout"
    else:
        assert response.status_code == 403, f"{role} reached {name}"
        if name in API_ENDPOINTS:
            assert response.json()["error"]["code"] == "forbidden"
