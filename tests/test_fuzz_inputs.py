"""Every input path, fed hypothesis-generated strings, numbers and bytes,
answers without a 5xx: the webhook endpoint (body, query, headers, signature),
the manual start forms, graph save, the API, the approval link, the login
page, the pages that read raw query and form values, and flow import."""

import json
from urllib.parse import quote, urlencode

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows import services, transfer
from tests.conftest import login
from tests.test_webhooks import hook_url, signing_credential
from tests.trigger_helpers import triggered_flow, webhook

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Every character, lone surrogates and NUL included.
ANY_CHAR = st.characters(exclude_categories=())
# Generated text, and the values that once caused 500s, mixed in often.
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=30),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff x", "9" * 1900, "1e400", "%00"]),
)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 3, max_value=2**63 + 3),
    st.integers(min_value=-(10**1950), max_value=10**1950),
    st.floats(allow_nan=True, allow_infinity=True),
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXT),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


def json_text(value) -> str:
    """JSON as a sender writes it: ASCII with \\u escapes, so lone
    surrogates travel; NaN and Infinity as Python writes them."""
    return json.dumps(value)


def form_body(fields: dict) -> str:
    # Surrogates travel as their (invalid) UTF-8 bytes.
    return urlencode(fields, encoding="utf-8", errors="surrogatepass")


def assert_no_5xx(response):
    assert response.status_code < 500, (response.status_code, response.content[:300])


RAW_BODIES = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(lambda value: json_text(value).encode()),
    st.sampled_from(
        [
            b'{"n": ' + b"9" * 5000 + b"}",
            b'{"n": ' + b"9" * 1900 + b"}",
            b'{"n": 1' + b"0" * 5000 + b".5}",
            b'{"s": "\\ud800"}',
            b'{"s": "\\u0000"}',
            b"\xff\xfe\xfd",
            b"[" * 3000 + b"]" * 3000,
        ]
    ),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=XyZ",
        "multipart/form-data",
        "text/plain",
        "application/vnd.api+json; charset=utf-8",
    ]
)


@pytest.mark.django_db
@FUZZ
@given(body=RAW_BODIES, content_type=CONTENT_TYPES, query=TEXT, header=st.text(max_size=20))
def test_webhook_bodies_queries_and_headers(olga, body, content_type, query, header):
    flow = _flow(olga, "fuzz-hook", webhook())
    url = hook_url(flow) + "?" + form_body({"q": query, query: "v"})
    headers = {"X-Anything": header.replace("\r", "").replace("\n", "")}
    assert_no_5xx(Client().post(url, data=body, content_type=content_type, headers=headers))


@pytest.mark.django_db
@FUZZ
@given(signature=TEXT, body=st.binary(max_size=50))
def test_webhook_signature_headers(olga, signature, body):
    flow = _flow(olga, "fuzz-signed", webhook(credential=_credential(olga)))
    header = signature.encode("latin-1", "replace").decode("latin-1").replace("\n", " ")
    for value in (header, f"t={header},v1=00", "t=" + "9" * len(header) * 20 + ",v1=1"):
        response = Client().post(
            hook_url(flow),
            data=body,
            content_type="application/json",
            headers={"X-Ledgerflow-Signature": value.replace("\r", " ")},
        )
        assert_no_5xx(response)


@pytest.mark.django_db
@FUZZ
@given(token=TEXT)
def test_webhook_and_approval_link_tokens(token):
    client = Client()
    for prefix in ("/hooks/", "/approvals/link/"):
        assert_no_5xx(client.get(prefix + quote(token, safe="", errors="surrogatepass") + "/"))
        assert_no_5xx(
            client.post(
                prefix + quote(token, safe="", errors="surrogatepass") + "/",
                data=form_body({"decision": token, "comment": token}),
                content_type="application/x-www-form-urlencoded",
            )
        )


@pytest.mark.django_db
@settings(FUZZ, max_examples=20)
@given(value=JSON_VALUES, text=TEXT)
def test_manual_start_forms(olga, value, text):
    client = login(Client(), olga)
    json_flow = _flow(olga, "fuzz-json", {"type": "trigger.manual", "config": {}})
    schema = {
        "type": "object",
        "properties": {
            "order": {"type": "string"},
            "n": {"type": "integer"},
            "x": {"type": "number"},
        },
    }
    typed_flow = _flow(
        olga, "fuzz-typed", {"type": "trigger.manual", "config": {"input_schema": schema}}
    )
    for flow, fields in (
        (json_flow, {"input": json_text(value)}),
        (json_flow, {"input": text}),
        (typed_flow, {"order": text, "n": text, "x": text}),
        (typed_flow, {"order": "A", "n": json_text(value), "x": json_text(value)}),
    ):
        response = client.post(
            reverse("flows:start_run", kwargs={"slug": flow.slug}),
            data=form_body(fields),
            content_type="application/x-www-form-urlencoded",
        )
        assert_no_5xx(response)


@pytest.mark.django_db
@FUZZ
@given(value=JSON_VALUES, text=TEXT)
def test_graph_save_and_flow_facts(olga, make_flow, value, text):
    client = login(Client(), olga)
    flow = _existing(olga, make_flow, "fuzz-graph")
    graph = {
        "nodes": [{"id": "start", "type": "trigger.manual", "config": {"x": value}}],
        "edges": [],
    }
    for fields in (
        {"graph": json_text(graph)},
        {"graph": text},
        {"graph": json_text(value), "note": text},
    ):
        response = client.post(
            reverse("flows:graph", kwargs={"slug": flow.slug}),
            data=form_body(fields),
            content_type="application/x-www-form-urlencoded",
        )
        assert_no_5xx(response)
    facts = {"name": text, "slug": text, "purpose": text, "tags": text, "review_cadence_days": text}
    for url in (reverse("flows:create"), reverse("flows:edit", kwargs={"slug": flow.slug})):
        response = client.post(
            url, data=form_body(facts), content_type="application/x-www-form-urlencoded"
        )
        assert_no_5xx(response)


@pytest.mark.django_db
@FUZZ
@given(body=st.one_of(JSON_VALUES.map(lambda v: json_text({"config": v}).encode()), RAW_BODIES))
def test_api_bodies(olga, body):
    client = login(Client(), olga)
    for key in ("http.request", "email.send"):
        url = reverse("api:connector_test_connection", kwargs={"key": key})
        assert_no_5xx(client.post(url, data=body, content_type="application/json"))


@pytest.mark.django_db
@FUZZ
@given(username=TEXT, password=TEXT)
def test_login_form(username, password):
    response = Client().post(
        reverse("login"),
        data=form_body({"username": username, "password": password}),
        content_type="application/x-www-form-urlencoded",
    )
    assert_no_5xx(response)


@pytest.mark.django_db
@settings(FUZZ, max_examples=15)
@given(text=TEXT)
def test_pages_reading_raw_query_and_form_values(adam, make_flow, text):
    client = login(Client(), adam)
    flow = _existing(adam, make_flow, "fuzz-pages")
    query = "?" + form_body({"flow": text, "stream": text, "page": text, "tab": text, "q": text})
    for url in (
        reverse("runs:list") if _has("runs:list") else "/runs/",
        reverse("audit_log"),
        reverse("approvals:inbox"),
        reverse("flows:inventory"),
        reverse("flows:audit"),
        "/runs/dead-letters/",
    ):
        assert_no_5xx(client.get(url + query))
    posts = {
        reverse("flows:transition", kwargs={"slug": flow.slug, "action": "pause"}): {
            "reason": text
        },
        "/breakers/reset/": {"target": text},
        "/runs/dead-letters/replay/": {"step": text, "version": text},
        "/credentials/new/": {"type": text, "name": text},
    }
    for url, fields in posts.items():
        response = client.post(
            url, data=form_body(fields), content_type="application/x-www-form-urlencoded"
        )
        assert_no_5xx(response)


@pytest.mark.django_db
@FUZZ
@given(value=JSON_VALUES, text=TEXT)
def test_flow_import(olga, value, text):
    document = {
        "format": transfer.FORMAT,
        "flow": {"name": text or "n", "slug": "fuzz-import", "purpose": value},
    }
    for candidate in (document, {"format": transfer.FORMAT, "flow": value}, value):
        try:
            transfer.import_flow(candidate, actor=olga)
        except (transfer.TransferError, services.FlowError):
            pass  # refused with a reason: what an import may do


def _has(name: str) -> bool:
    from django.urls import NoReverseMatch

    try:
        reverse(name)
    except NoReverseMatch:
        return False
    return True


def _credential(owner) -> str:
    from connectors.credentials.models import Credential

    if not Credential.objects.filter(name="hook-signing").exists():
        signing_credential(owner)
    return "hook-signing"


def _flow(actor, slug: str, trigger: dict):
    from flows.models import Flow

    return Flow.objects.filter(slug=slug).first() or triggered_flow(actor, trigger, slug=slug)


def _existing(actor, make_flow, slug: str):
    from flows.models import Flow

    return Flow.objects.filter(slug=slug).first() or make_flow(actor, slug=slug)
