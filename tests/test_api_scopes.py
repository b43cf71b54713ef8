"""Every API endpoint, for a token of every scope held by a person of every
role: allowed or denied. A token may do what its scope allows and its
user's role allows, both; the roles column is the pages' matrix
(tests/test_roles_matrix.py). The expectations are written out here, not
read from config/roles.py, which they check."""

import pytest
from django.db import transaction
from django.urls import get_resolver

from tests.api_helpers import bearer, token_for
from tests.test_roles_matrix import (  # noqa: F401 (fixtures)
    ADMIN,
    NOROLE,
    OPERATOR,
    PAST_THE_CHECK,
    REVIEWER,
    _draft_body,
    _pattern_names,
    _preview_body,
    personas,
    url_for,
)

EVERY_SCOPE = {"read", "operate", "review", "admin"}
STAFF = {OPERATOR, REVIEWER, ADMIN}
EDITORS = {OPERATOR, ADMIN}
REVIEWERS = {REVIEWER, ADMIN}
EDIT_SCOPES = {"operate", "admin"}
REVIEW_SCOPES = {"review", "admin"}

# url name -> (method, roles that may, scopes that may)
EXPECTED = {
    "api:openapi-json": ("GET", STAFF, EVERY_SCOPE),
    "api:openapi-view": ("GET", STAFF, EVERY_SCOPE),
    "api:connectors": ("GET", STAFF, EVERY_SCOPE),
    "api:connector_test_connection": ("POST", EDITORS, EDIT_SCOPES),
    "api:flow_draft": ("GET", STAFF, EVERY_SCOPE),
    "api:flow_draft_save": ("PUT", EDITORS, EDIT_SCOPES),
    # Validating changes nothing: reading is enough.
    "api:flow_validate": ("POST", STAFF, EVERY_SCOPE),
    "api:flow_publish": ("POST", EDITORS, EDIT_SCOPES),
    "api:flow_versions": ("GET", STAFF, EVERY_SCOPE),
    "api:flow_version": ("GET", STAFF, EVERY_SCOPE),
    "api:flow_export": ("GET", STAFF, EVERY_SCOPE),
    # Credential names are for editing a node: editors only, even to read.
    "api:credential_names": ("GET", EDITORS, EDIT_SCOPES),
    "api:expression_preview": ("POST", EDITORS, EDIT_SCOPES),
    "api:flow_test_runs": ("POST", EDITORS, EDIT_SCOPES),
    "api:flow_test_run_list": ("GET", STAFF, EVERY_SCOPE),
    "api:flow_test_run": ("GET", STAFF, EVERY_SCOPE),
    "api:run_diagram": ("GET", STAFF, EVERY_SCOPE),
    "api:run": ("GET", STAFF, EVERY_SCOPE),
    "api:runs": ("GET", STAFF, EVERY_SCOPE),
    "api:run_start": ("POST", EDITORS, EDIT_SCOPES),
    # Reading one's tasks is reading; deciding needs the review scope.
    "api:approval_tasks": ("GET", REVIEWERS, EVERY_SCOPE),
    "api:approval_decide": ("POST", REVIEWERS, REVIEW_SCOPES),
    # Replaying dead letters (and previewing a replay) changes runs.
    "api:step_replay": ("POST", EDITORS, EDIT_SCOPES),
    "api:dead_letters_replay": ("POST", EDITORS, EDIT_SCOPES),
    # The dead-letter list is the replay page's: editors only.
    "api:dead_letters": ("GET", EDITORS, EDIT_SCOPES),
    "api:dead_letters_replay_preview": ("GET", EDITORS, EDIT_SCOPES),
}
EVERY_ROLE = (OPERATOR, REVIEWER, ADMIN, NOROLE)


def test_every_api_endpoint_is_in_the_table():
    names = {n for n in _pattern_names(get_resolver().url_patterns) if n.startswith("api:")}
    assert names - {"api:api-root"} == set(EXPECTED)


def _send(client, method: str, url: str, name: str, secret: str):
    headers = bearer(secret)
    if method == "GET":
        return client.get(url, **headers)
    if name == "api:flow_draft_save":
        body = _draft_body(url)
    elif name == "api:expression_preview":
        body = _preview_body(url)
    elif name == "api:approval_decide":
        body = {"decision": "rejected"}
    else:
        body = {}
    send = client.put if method == "PUT" else client.post
    return send(url, body, content_type="application/json", **headers)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_scope_and_role_is_allowed_or_denied(client, personas, url_for, name, settings):  # noqa: F811
    settings.LEDGERFLOW_API_WRITES_PER_MINUTE = 10_000
    method, roles, scopes = EXPECTED[name]
    url = url_for(name)
    seen = {}
    for role in EVERY_ROLE:
        for scope in sorted(EVERY_SCOPE):
            secret = token_for(personas[role], scope, name=f"{role}-{scope}")
            # Each call on the state the fixture made: a decision or a
            # publish by one token does not change the next one's answer.
            with transaction.atomic():
                response = _send(client, method, url, name, secret)
                transaction.set_rollback(True)
            status = response.status_code
            code = response.json()["error"]["code"] if status in (401, 403) else None
            allowed = role in roles and scope in scopes
            if allowed:
                # Allowed: an answer, or the task's own refusal (an admin
                # may decide, but this task waits in the reviewers' queue).
                # The matrix's bare request may also be refused past the
                # check (no dead letter to replay, none named to preview).
                ok = status in (200, 201, *PAST_THE_CHECK.get(name, ())) or (
                    status == 403 and code == "refused"
                )
            else:
                ok = status == 403 and code == "forbidden"
            seen[(role, scope)] = (allowed, status, code, ok)
    wrong = {k: v for k, v in seen.items() if not v[3]}
    assert not wrong, f"{name}: (allowed?, status, code) {wrong}"
