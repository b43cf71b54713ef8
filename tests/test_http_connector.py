"""The HTTP request connector against real local servers: auth from each
kind of credential, query, form and JSON bodies, pagination, redirects that
keep credentials at home, caps, and drift against a declared shape."""

import base64
import datetime as dt
import hashlib
import hmac
import io
import json
from urllib.parse import parse_qs

import pytest
from django.core.management import call_command
from django.urls import reverse

from connectors.base import ConnectorError
from connectors.credentials import store as credentials
from connectors.nodes.http_request import MAX_RESPONSE_BYTES
from flows.models import Flow
from runs import driver
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Step
from tests.conftest import login
from tests.connector_helpers import run_connector
from tests.engine_helpers import chain, publish
from tests.localserver import Reply


def echo(seen):
    return Reply(200, {"ok": True})


def http(url: str, **config):
    return run_connector("http.request", {"url": url, "timeout_seconds": 5, **config})


def make(name: str, type_: str, fields: dict, secrets: dict, allowed_hosts=("127.0.0.1",)):
    """A credential for the local test servers (any port on 127.0.0.1)."""
    return credentials.credential_create(
        actor="system:test", name=name, type=type_, fields=fields, secrets=secrets,
        allowed_hosts=list(allowed_hosts),
    )  # fmt: skip


def test_bearer_and_basic_credentials_authorise_the_request(db, local_server):
    server = local_server({"/me": echo})
    make("api-bearer", "bearer", {}, {"token": "bearer-token-123"})
    make("api-basic", "basic", {"username": "svc"}, {"password": "basic-pass-456"})
    http(server.url + "/me", credential="api-bearer")
    http(server.url + "/me", credential="api-basic")
    bearer, basic = (seen.headers["authorization"] for seen in server.seen)
    assert bearer == "Bearer bearer-token-123"
    assert basic == "Basic " + base64.b64encode(b"svc:basic-pass-456").decode()


def test_a_header_key_credential_sets_its_header(db, local_server):
    server = local_server({"/me": echo})
    make("api-key", "header_key", {"header_name": "X-Api-Key"}, {"key": "key-789-abc"})
    http(server.url + "/me", credential="api-key")
    assert server.seen[0].headers["x-api-key"] == "key-789-abc"
    assert "authorization" not in server.seen[0].headers


def test_hmac_signs_the_timestamp_and_the_exact_body(db, local_server):
    server = local_server({"/hook": echo})
    make("signer", "hmac", {}, {"secret": "shared-secret-xyz"})
    moment = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(moment):
        http(server.url + "/hook", method="POST", credential="signer", json_body={"a": 1})
    seen = server.seen[0]
    stamp = seen.headers["x-timestamp"]
    assert stamp == str(int(moment.timestamp()))
    expected = hmac.new(b"shared-secret-xyz", stamp.encode() + b"." + seen.body, hashlib.sha256)
    assert seen.headers["x-signature"] == expected.hexdigest()
    assert json.loads(seen.body) == {"a": 1}


def test_query_and_form_bodies_are_sent(db, local_server):
    server = local_server({"/form": echo})
    http(server.url + "/form", method="POST", query={"page": 2, "q": "a b"},
         form_body={"name": "Ada", "n": 3})  # fmt: skip
    seen = server.seen[0]
    assert parse_qs(seen.path.split("?", 1)[1]) == {"page": ["2"], "q": ["a b"]}
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(seen.body.decode()) == {"name": ["Ada"], "n": ["3"]}
    assert seen.headers["idempotency-key"] == "idem-key-1"


def test_a_config_with_two_bodies_or_a_bad_schema_is_refused():
    from connectors.nodes.http_request import HttpConfig

    with pytest.raises(ValueError, match="json_body or form_body"):
        HttpConfig.model_validate({"url": "https://x.test", "json_body": {}, "form_body": {}})
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        HttpConfig.model_validate({"url": "https://x.test", "expect_schema": {"type": 12}})


def test_pagination_by_link_header_concatenates_items(db, local_server):
    def page(seen):
        number = int(parse_qs(seen.path.split("?", 1)[1])["page"][0])
        headers = {"Link": f'</items?page={number + 1}>; rel="next"'} if number < 3 else {}
        return Reply(200, [f"item-{number}a", f"item-{number}b"], headers=headers)

    server = local_server({"/items": page})
    make("pager", "bearer", {}, {"token": "pager-token-1"})
    result = http(server.url + "/items", query={"page": 1}, credential="pager",
                  paginate={"next_link": "header"})  # fmt: skip
    assert result.output == {
        "status": 200,
        "items": ["item-1a", "item-1b", "item-2a", "item-2b", "item-3a", "item-3b"],
        "pages": 3,
        "truncated": False,
    }
    assert all(seen.headers["authorization"] == "Bearer pager-token-1" for seen in server.seen)


def test_pagination_by_json_field_stops_at_max_pages(local_server):
    def page(seen):
        number = int(seen.path.rsplit("=", 1)[1])
        return Reply(200, {"data": {"rows": [number]}, "paging": {"next": f"/rows?p={number + 1}"}})

    server = local_server({"/rows": page})
    result = http(
        server.url + "/rows?p=1",
        paginate={"next_link": "json", "next_field": "paging.next", "items_field": "data.rows",
                  "max_pages": 4},
    )  # fmt: skip
    assert result.output["items"] == [1, 2, 3, 4]
    assert result.output["truncated"] is True and len(server.seen) == 4


def test_credentials_do_not_follow_a_redirect_to_another_origin(db, local_server):
    other = local_server({"/landing": echo})
    home = local_server(
        {
            "/same": lambda seen: Reply(302, {}, headers={"Location": "/landing-here"}),
            "/landing-here": echo,
            "/away": lambda seen: Reply(302, {}, headers={"Location": other.url + "/landing"}),
        }
    )
    make("home-token", "header_key", {"header_name": "X-Key"}, {"key": "home-key-1234"})
    http(home.url + "/same", credential="home-token")
    assert home.seen[-1].path == "/landing-here"
    assert home.seen[-1].headers["x-key"] == "home-key-1234"
    http(home.url + "/away", credential="home-token")
    assert other.seen[0].path == "/landing" and "x-key" not in other.seen[0].headers


def test_a_redirect_loop_stops_after_five_hops(local_server):
    server = local_server({"/loop": lambda seen: Reply(302, {}, headers={"Location": "/loop"})})
    with pytest.raises(ConnectorError, match="more than 5 redirects") as failed:
        http(server.url + "/loop")
    assert failed.value.retryable is False and len(server.seen) == 6


def test_a_response_over_the_size_cap_fails(local_server):
    server = local_server({"/big": lambda seen: Reply(200, b"x" * (MAX_RESPONSE_BYTES + 10))})
    with pytest.raises(ConnectorError, match="larger than"):
        http(server.url + "/big")


def test_parse_json_insists_on_json(local_server):
    server = local_server({"/text": lambda seen: Reply(200, "plain words")})
    assert http(server.url + "/text").output["body"] == "plain words"
    with pytest.raises(ConnectorError, match="not JSON"):
        http(server.url + "/text", parse="json")


def test_server_errors_are_retryable_and_client_errors_are_not(local_server):
    server = local_server(
        {"/busy": lambda seen: Reply(503, {}, headers={"Retry-After": "7"}),
         "/bad": lambda seen: Reply(422, {"error": "no"})}
    )  # fmt: skip
    with pytest.raises(ConnectorError) as busy:
        http(server.url + "/busy")
    assert busy.value.retryable and busy.value.retry_after == 7
    with pytest.raises(ConnectorError) as bad:
        http(server.url + "/bad")
    assert not bad.value.retryable


# --- drift -------------------------------------------------------------------------

CUSTOMER_SCHEMA = {
    "type": "object",
    "required": ["id", "email"],
    "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
}


def drift_flow(olga, url: str) -> Flow:
    return publish(
        olga,
        chain({"id": "lookup", "type": "http.request",
               "config": {"url": url, "expect_schema": CUSTOMER_SCHEMA, "timeout_seconds": 5}}),
        slug="customers",
    )  # fmt: skip


def test_a_response_that_drifts_from_its_shape_is_recorded_on_the_flow(
    olga, client, local_server, eager_celery
):
    shapes = iter([{"id": 1, "email": "a@x.test"}, {"id": "C-0042", "mail": "ada@private.test"}])
    server = local_server({"/customer": lambda seen: Reply(200, next(shapes))})
    flow = drift_flow(olga, server.url + "/customer")
    with eager_celery():
        fine = driver.start_run(flow=flow, input={}, actor="user:olga")
        drifted = driver.start_run(flow=flow, input={}, actor="user:olga")
    for run in (fine, drifted):
        run.refresh_from_db()
        assert run.status == "succeeded"  # drift does not fail the step
    [event] = Event.objects.filter(stream=flow.stream, type="connector.drift")
    assert event.payload["run_id"] == drifted.pk and event.payload["node"] == "lookup"
    assert event.payload["message"] == "$: missing required email"
    # The response itself is not in the log.
    assert "C-0042" not in event.body and "ada@private.test" not in event.body
    login(client, olga)
    page = client.get(reverse("flows:detail", args=[flow.slug])).content.decode()
    assert "Drift" in page and "missing required email" in page
    assert Step.objects.get(run=drifted, node_id="lookup").output["body"]["id"] == "C-0042"


def test_drift_messages_name_the_place_not_the_value(olga, local_server, eager_celery):
    server = local_server({"/customer": lambda seen: Reply(200, {"id": "secret-ish", "email": 5})})
    flow = drift_flow(olga, server.url + "/customer")
    with eager_celery():
        driver.start_run(flow=flow, input={}, actor="user:olga")
    event = Event.objects.get(stream=flow.stream, type="connector.drift")
    assert event.payload["message"].startswith("$.")
    assert "does not satisfy type" in event.payload["message"]
    assert "secret-ish" not in event.body


def test_drift_events_leave_the_flow_row_and_its_rebuild_alike(olga, local_server, eager_celery):
    server = local_server({"/customer": lambda seen: Reply(200, {"id": 1})})
    flow = drift_flow(olga, server.url + "/customer")
    version_before = Flow.objects.get(pk=flow.pk).version
    with eager_celery():
        driver.start_run(flow=flow, input={}, actor="user:olga")
    live = Flow.objects.filter(pk=flow.pk).values().get()
    assert live["version"] == version_before
    call_command("rebuild_projections", stdout=io.StringIO())
    assert Flow.objects.filter(pk=flow.pk).values().get() == live


def test_the_whole_call_is_bounded_by_its_timeout(local_server):
    import time

    def slow(seen):
        time.sleep(1.5)
        return Reply(200, {})

    server = local_server({"/slow": slow})
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="timed out") as failed:
        http(server.url + "/slow", timeout_seconds=0.5)
    assert failed.value.retryable and time.monotonic() - started < 1.4


def test_a_step_naming_a_missing_credential_dead_letters_at_once(olga, local_server, eager_celery):
    server = local_server({"/me": echo})
    node = {"id": "call", "type": "http.request", "retry": {"max_attempts": 3},
            "config": {"url": server.url + "/me", "credential": "not-created-yet"}}  # fmt: skip
    flow = publish(olga, chain(node), slug="missing-credential")
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="user:olga")
    step = Step.objects.get(run=run, node_id="call")
    assert step.status == "dead_lettered" and step.attempt == 1
    assert step.error == "credential 'not-created-yet' does not exist"
    assert server.seen == []
