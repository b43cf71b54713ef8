"""The API's contract: one error shape for every refusal (400, 401, 403,
404, 409, 422, 429), idempotency keys on starting a run and deciding a task,
write rate limits per token held in the shared store, and the schema and
docs served from this site."""

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from approvals.models import ApprovalTask
from config.tokens import ratelimit
from config.tokens.models import IdempotentAnswer, RateWindow
from runs.models import Run
from tests.api_helpers import bearer, call, ready_flow, start_url, token_for  # noqa: F401
from tests.approval_helpers import INPUT, approval_flow


def shape(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


def test_every_refusal_has_the_one_error_shape(client, olga, rita, flow):
    secret = token_for(olga, "operate")
    shape(client.get("/api/v1/connectors"), 401, "unauthenticated")
    shape(call(client, "GET", "/api/v1/approvals/tasks", secret), 403, "forbidden")
    shape(call(client, "GET", "/api/v1/flows/no-such-flow/draft", secret), 404, "not_found")
    shape(call(client, "GET", "/api/v1/runs/999999999", secret), 404, "not_found")
    invalid = shape(call(client, "POST", start_url(flow), secret, {"version": "two"}), 422,
                    "invalid")  # fmt: skip
    assert invalid["details"]["errors"][0]["loc"][-1] == "version"
    broken = client.post(start_url(flow), b"{not json", content_type="application/json",
                         **bearer(secret))  # fmt: skip
    assert broken.status_code in (400, 422) and set(broken.json()) == {"error"}
    nul = call(client, "GET", "/api/v1/connectors?q=%00", secret)
    shape(nul, 400, "bad_request")
    missing = call(client, "POST", start_url(flow), secret, {"version": 7})
    assert "no version 7" in shape(missing, 409, "conflict")["message"]
    assert not Run.objects.exists()


def test_a_decision_with_a_broken_form_is_422_naming_the_field(client, adam, rita):
    flow = approval_flow(adam, slug="refunds")
    run = call(client, "POST", start_url(flow), token_for(adam, "operate"), {"input": INPUT})
    task = ApprovalTask.objects.get(run_id=run.json()["id"])
    url = reverse("api:approval_decide", kwargs={"task_id": task.pk})
    body = {"decision": "approved", "fields": {"refund_kind": "cash"}}
    error = shape(call(client, "POST", url, token_for(rita, "review"), body), 422, "invalid")
    assert "refund_kind" in error["details"]


# --- idempotency keys ---------------------------------------------------------


def test_the_same_key_gives_the_same_answer_and_starts_one_run(client, olga, flow):
    secret = token_for(olga, "operate")
    body = {"input": {"order": "A-1"}}
    first = call(client, "POST", start_url(flow), secret, body, HTTP_IDEMPOTENCY_KEY="k-1")
    again = call(client, "POST", start_url(flow), secret, body, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert Run.objects.count() == 1
    # Another key (or none) is another run.
    call(client, "POST", start_url(flow), secret, body, HTTP_IDEMPOTENCY_KEY="k-2")
    call(client, "POST", start_url(flow), secret, body)
    assert Run.objects.count() == 3


def test_the_same_key_with_another_body_is_409(client, olga, flow):
    secret = token_for(olga, "operate")
    call(client, "POST", start_url(flow), secret, {"input": {"a": 1}}, HTTP_IDEMPOTENCY_KEY="k")
    other = call(client, "POST", start_url(flow), secret, {"input": {"a": 2}},
                 HTTP_IDEMPOTENCY_KEY="k")  # fmt: skip
    assert "different request" in shape(other, 409, "conflict")["message"]
    assert Run.objects.count() == 1


def test_keys_are_per_person(client, olga, adam, flow):
    body = {"input": {"a": 1}}
    for user in (olga, adam):
        response = call(client, "POST", start_url(flow), token_for(user, "operate"), body,
                        HTTP_IDEMPOTENCY_KEY="shared")  # fmt: skip
        assert response.status_code == 201
    assert Run.objects.count() == 2
    assert {r.started_by for r in Run.objects.all()} == {"user:olga", "user:adam"}


def test_a_refused_request_keeps_no_answer_so_a_fixed_retry_may_use_the_key(client, olga, flow):
    secret = token_for(olga, "operate")
    refused = call(client, "POST", start_url(flow), secret, {"version": 9},
                   HTTP_IDEMPOTENCY_KEY="retry-me")  # fmt: skip
    assert refused.status_code == 409 and not IdempotentAnswer.objects.exists()
    fixed = call(client, "POST", start_url(flow), secret, {"version": 9},
                 HTTP_IDEMPOTENCY_KEY="retry-me")  # fmt: skip
    assert fixed.status_code == 409
    assert not Run.objects.exists()


def test_a_key_is_kept_24_hours(client, olga, flow):
    secret = token_for(olga, "operate")
    body = {"input": {}}
    call(client, "POST", start_url(flow), secret, body, HTTP_IDEMPOTENCY_KEY="day")
    IdempotentAnswer.objects.update(
        created_at=IdempotentAnswer.objects.get().created_at - dt.timedelta(hours=23)
    )
    call(client, "POST", start_url(flow), secret, body, HTTP_IDEMPOTENCY_KEY="day")
    assert Run.objects.count() == 1
    IdempotentAnswer.objects.update(
        created_at=IdempotentAnswer.objects.get().created_at - dt.timedelta(hours=2)
    )
    call(client, "POST", start_url(flow), secret, body, HTTP_IDEMPOTENCY_KEY="day")
    assert Run.objects.count() == 2


def test_the_hourly_purge_forgets_answers_past_24_hours(client, olga, flow):
    from config.tokens.tasks import forget_idempotent_answers

    secret = token_for(olga, "operate")
    for key in ("old", "new"):
        call(client, "POST", start_url(flow), secret, {}, HTTP_IDEMPOTENCY_KEY=key)
    IdempotentAnswer.objects.filter(key="old").update(
        created_at=IdempotentAnswer.objects.get(key="old").created_at - dt.timedelta(hours=25)
    )
    assert forget_idempotent_answers() == 1
    assert list(IdempotentAnswer.objects.values_list("key", flat=True)) == ["new"]


def test_a_decision_retried_with_its_key_is_the_same_answer(client, adam, rita):
    flow = approval_flow(adam, slug="refunds", fields=[])
    run = call(client, "POST", start_url(flow), token_for(adam, "operate"), {"input": INPUT})
    task = ApprovalTask.objects.get(run_id=run.json()["id"])
    url = reverse("api:approval_decide", kwargs={"task_id": task.pk})
    secret = token_for(rita, "review")
    body = {"decision": "approved", "comment": "fine"}
    first = call(client, "POST", url, secret, body, HTTP_IDEMPOTENCY_KEY="d-1")
    again = call(client, "POST", url, secret, body, HTTP_IDEMPOTENCY_KEY="d-1")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() and first.json()["decision"] == "approved"
    # Without the key a second decision is refused: decided already.
    shape(call(client, "POST", url, secret, body), 409, "conflict")
    changed = call(client, "POST", url, secret, {"decision": "rejected"},
                   HTTP_IDEMPOTENCY_KEY="d-1")  # fmt: skip
    shape(changed, 409, "conflict")


def test_an_unusable_key_is_400(client, olga, flow):
    response = call(client, "POST", start_url(flow), token_for(olga, "operate"), {},
                    HTTP_IDEMPOTENCY_KEY="x" * 201)  # fmt: skip
    shape(response, 400, "bad_request")


# --- rate limits ---------------------------------------------------------------


def _flush_counts():
    from django.conf import settings

    if settings.REDIS_URL:
        client = ratelimit._redis(settings.REDIS_URL)
        for key in client.scan_iter("ledgerflow:api-writes:*"):
            client.delete(key)


@pytest.mark.parametrize("store", ["redis", "database"])
def test_writes_past_the_limit_are_429_with_retry_after(client, olga, flow, store, settings):
    if store == "database":
        settings.REDIS_URL = ""
    elif not settings.REDIS_URL:
        pytest.skip("no Redis configured")
    _flush_counts()
    settings.LEDGERFLOW_API_WRITES_PER_MINUTE = 3
    secret, other = token_for(olga, "operate"), token_for(olga, "operate", name="other")
    answers = [call(client, "POST", start_url(flow), secret).status_code for _ in range(4)]
    # (a window may end in between: then the fourth is allowed too)
    limited = call(client, "POST", start_url(flow), secret)
    if limited.status_code != 429:
        limited = call(client, "POST", start_url(flow), secret)
    assert answers[:3] == [201, 201, 201]
    error = shape(limited, 429, "rate_limited")
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert error["details"]["retry_after"] == int(limited["Retry-After"])
    # Reads are not limited, and another token has its own count.
    assert call(client, "GET", "/api/v1/connectors", secret).status_code == 200
    assert call(client, "POST", start_url(flow), other).status_code == 201
    if store == "database":
        assert RateWindow.objects.filter(bucket__startswith="token:").exists()
    _flush_counts()


# --- schema and docs -------------------------------------------------------------


def test_the_schema_and_docs_are_served_from_here_with_a_token(client, olga):
    secret = token_for(olga, "read")
    schema = client.get("/api/v1/openapi.json", **bearer(secret))
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/flows/{slug}/runs" in paths and "/api/v1/approvals/tasks" in paths
    schemes = schema.json()["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} >= {"http", "apiKey"}
    docs = client.get("/api/v1/docs", **bearer(secret))
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "https://" not in html
    assert client.get("/api/v1/openapi.json", **bearer("lf_nope")).status_code == 401
    nobody = User.objects.create_user("nobody")  # no role: a token gives nothing
    refused = client.get("/api/v1/openapi.json", **bearer(token_for(nobody, "read")))
    shape(refused, 403, "forbidden")


def test_the_purge_is_on_the_beat_schedule_and_registered():
    from django.conf import settings

    from config.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["api-idempotency-purge"]
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks


def test_a_session_call_needs_its_csrf_token_and_a_bearer_call_none(olga, flow):
    from django.test import Client

    from tests.conftest import login

    browser = login(Client(enforce_csrf_checks=True), olga)
    refused = browser.post(start_url(flow), {}, content_type="application/json")
    assert refused.status_code == 403 and set(refused.json()) == {"error"}
    browser.get(reverse("profile"))  # sets the CSRF cookie, as any page does
    csrf = browser.cookies["csrftoken"].value
    allowed = browser.post(start_url(flow), {}, content_type="application/json",
                           HTTP_X_CSRFTOKEN=csrf)  # fmt: skip
    assert allowed.status_code == 201, allowed.content
    script = Client(enforce_csrf_checks=True)
    assert call(script, "POST", start_url(flow), token_for(olga, "operate")).status_code == 201
