"""Personal API tokens: made and revoked on the profile page, shown once,
stored as a digest; expiry, revocation and deactivation close them; a
token's rights are its scope and its user's current role, both; what a
token does is recorded as its user's act, naming the token, so separation
of duties holds for people."""

import datetime as dt
import hashlib
import re

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from approvals.models import ApprovalTask
from config.roles import OPERATOR, REVIEWER
from config.tokens import services
from config.tokens.models import ApiToken
from runs.ground import clock
from runs.ground.models import Event
from tests.api_helpers import bearer, call, ready_flow, start_url, token_for  # noqa: F401
from tests.approval_helpers import INPUT, approval_flow
from tests.conftest import PASSWORD, login

CONNECTORS = "/api/v1/connectors"


def _create_on_page(client, **form):
    data = {"name": "deploys", "scope": "operate", "expires": "30", **form}
    return client.post(reverse("profile_token_create"), data)


def test_a_token_made_on_the_profile_page_is_shown_once_and_kept_as_a_digest(client, olga):
    login(client, olga)
    page = client.get(reverse("profile"))
    assert page.status_code == 200 and b"You have no API token" in page.content
    made = _create_on_page(client)
    assert made.status_code == 200
    secret = re.search(rb'data-testid="token-secret">(lf_[^<]+)<', made.content).group(1).decode()
    assert len(secret) > 40
    token = ApiToken.objects.get(user=olga)
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert token.prefix == secret[:10] and token.scope == "operate"
    assert token.expires_at is not None
    # Nowhere else: not on the page again, not in any stored row or event.
    assert secret.encode() not in client.get(reverse("profile")).content
    assert secret[10:] not in str(list(ApiToken.objects.values()))
    created = Event.objects.get(stream="auth:tokens", type="token.created")
    assert created.actor == "user:olga" and secret[10:] not in created.body
    assert created.payload["token"] == {"id": token.pk, "name": "deploys"}
    # And it works.
    assert call(client.__class__(), "GET", CONNECTORS, secret).status_code == 200


def test_a_bad_token_form_is_refused_with_its_reason(client, olga):
    login(client, olga)
    assert _create_on_page(client, name="").status_code == 400
    assert _create_on_page(client, scope="root").status_code == 400
    assert _create_on_page(client, expires="9999").status_code == 400
    assert not ApiToken.objects.exists()
    assert not Event.objects.filter(stream="auth:tokens").exists()


def test_each_use_records_when_it_was_last_used(client, olga):
    secret = token_for(olga, "read")
    assert ApiToken.objects.get().last_used_at is None
    assert call(client, "GET", CONNECTORS, secret).status_code == 200
    assert ApiToken.objects.get().last_used_at is not None


def test_no_token_a_wrong_one_and_a_non_bearer_header_are_401_in_the_error_shape(client, olga):
    token_for(olga, "read")
    for headers in ({}, bearer("lf_" + "x" * 43), bearer("nonsense"),
                    {"HTTP_AUTHORIZATION": "Basic b2xnYTpwdw=="}):  # fmt: skip
        response = client.get(CONNECTORS, **headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_token_opens_nothing(client, olga):
    token, secret = services.token_create(
        user=olga, name="short", scope="read",
        expires_at=clock.now() + dt.timedelta(minutes=5),
    )  # fmt: skip
    assert call(client, "GET", CONNECTORS, secret).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=clock.now())
    assert call(client, "GET", CONNECTORS, secret).status_code == 401


def test_an_expiry_in_the_past_is_refused(olga):
    with pytest.raises(services.TokenRefused):
        services.token_create(user=olga, name="x", scope="read", expires_at=clock.now())


def test_a_revoked_token_opens_nothing_and_the_revocation_is_an_event(client, olga, rita):
    secret = token_for(olga, "read")
    token = ApiToken.objects.get()
    login(client, rita)
    # Nobody revokes someone else's token.
    client.post(reverse("profile_token_revoke", args=[token.pk]))
    assert ApiToken.objects.get().revoked_at is None
    login(client, olga)
    assert client.post(reverse("profile_token_revoke", args=[token.pk])).status_code == 302
    assert ApiToken.objects.get().revoked_at is not None
    revoked = Event.objects.get(stream="auth:tokens", type="token.revoked")
    assert revoked.actor == "user:olga" and revoked.payload["token"]["id"] == token.pk
    assert call(client.__class__(), "GET", CONNECTORS, secret).status_code == 401


def test_deactivating_the_user_disables_the_token(client, olga):
    secret = token_for(olga, "operate")
    assert call(client, "GET", CONNECTORS, secret).status_code == 200
    User.objects.filter(pk=olga.pk).update(is_active=False)
    assert call(client, "GET", CONNECTORS, secret).status_code == 401


def test_a_tokens_rights_are_its_scope_and_its_users_role_both(client, olga, rita, flow):
    # Operator with a read token: the role could, the scope cannot.
    read = call(client, "POST", start_url(flow), token_for(olga, "read"))
    assert read.status_code == 403
    assert read.json()["error"]["code"] == "forbidden"
    assert "scope (read)" in read.json()["error"]["message"]
    # Reviewer with an admin token: the scope could, the role cannot.
    wide = call(client, "POST", start_url(flow), token_for(rita, "admin"))
    assert wide.status_code == 403 and "role" in wide.json()["error"]["message"]
    # Operator with an operate token: both allow it.
    secret = token_for(olga, "operate")
    assert call(client, "POST", start_url(flow), secret).status_code == 201
    # The role is read at every call: taken away, the token loses it too.
    olga.groups.remove(Group.objects.get(name=OPERATOR))
    assert call(client, "POST", start_url(flow), secret).status_code == 403


def test_a_superusers_token_gets_only_what_a_role_gives(client, flow):
    root = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    secret = token_for(root, "admin")
    assert call(client, "POST", start_url(flow), secret).status_code == 403
    root.groups.add(Group.objects.get(name=OPERATOR))
    assert call(client, "POST", start_url(flow), secret).status_code == 201


def test_what_a_token_does_is_its_users_act_naming_the_token(client, olga, flow):
    secret = token_for(olga, "operate", name="ci-pipeline")
    token = ApiToken.objects.get()
    response = call(client, "POST", start_url(flow), secret, {"input": {"n": 1}})
    assert response.status_code == 201, response.content
    run_id = response.json()["id"]
    started = Event.objects.get(stream=f"run:{run_id}", type="run.started")
    assert started.actor == "user:olga"
    assert started.payload["token"] == {"id": token.pk, "name": "ci-pipeline"}
    # The engine's own events in the same call are not the person's.
    for event in Event.objects.filter(stream=f"run:{run_id}").exclude(actor="user:olga"):
        assert "token" not in event.payload
    # A session's call names no token.
    login(client, olga)
    again = client.post(start_url(flow), {"input": {}}, content_type="application/json")
    session_run = again.json()["id"]
    started = Event.objects.get(stream=f"run:{session_run}", type="run.started")
    assert started.actor == "user:olga" and "token" not in started.payload


def test_separation_of_duties_holds_for_a_run_started_with_a_token(client, adam, rita):
    sam = User.objects.create_user("sam", password=PASSWORD)
    sam.groups.add(Group.objects.get(name=OPERATOR), Group.objects.get(name=REVIEWER))
    flow = approval_flow(adam, slug="sod", separation_of_duties=True, fields=[])
    started = call(client, "POST", start_url(flow), token_for(sam, "operate"), {"input": INPUT})
    assert started.status_code == 201, started.content
    task = ApprovalTask.objects.get(run_id=started.json()["id"])
    decide = reverse("api:approval_decide", kwargs={"task_id": task.pk})
    mine = call(client, "POST", decide, token_for(sam, "review", name="sam-review"),
                {"decision": "approved"})  # fmt: skip
    assert mine.status_code == 403, mine.content
    assert "Separation of duties" in mine.json()["error"]["message"]
    other = call(client, "POST", decide, token_for(rita, "review"), {"decision": "approved"})
    assert other.status_code == 200, other.content
    decided = Event.objects.get(type="approval.decided")
    assert decided.actor == "user:rita" and decided.payload["via"] == "api"
    assert decided.payload["token"]["name"] == "ci"
