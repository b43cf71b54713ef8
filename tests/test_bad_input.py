"""Bad input anyone can send gets a 4xx with a message, never a 500, and
leaves nothing behind: lone surrogates, NUL characters, invalid UTF-8, numbers
too large, absurd signature timestamps and broken multipart bodies, on the
webhook endpoint, the manual start form, graph save, import and the API."""

import io
import time

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from connectors.triggers.models import DeliveryRecord, SeenSignature
from runs.ground.models import Event
from runs.models import Run
from tests.conftest import login
from tests.test_webhooks import hook_url, signed, signing_credential
from tests.trigger_helpers import pause, triggered_flow, webhook

BIG_INT = "1" * 1900
HUGE_INT = "1" * 5000
HUGE_FLOAT = "1" * 5000 + ".5"

BAD_JSON_BODIES = {
    "lone surrogate": (b'{"name": "\\ud800"}', "surrogate"),
    "lone surrogate in a key": (b'{"\\udfff": 1}', "surrogate"),
    "NUL character": (b'{"name": "a\\u0000b"}', "NUL"),
    "NUL in a key": (b'{"\\u0000": 1}', "NUL"),
    "invalid UTF-8": (b'{"name": "\xff\xfe"}', "not valid JSON"),
    "1,900-digit integer": (f'{{"n": {BIG_INT}}}'.encode(), "too large"),
    "5,000-digit integer": (f'{{"n": {HUGE_INT}}}'.encode(), "not valid JSON"),
    "5,000-digit number": (f'{{"n": {HUGE_FLOAT}}}'.encode(), "too large"),
    "exponent overflow": (b'{"n": 1e400}', "too large"),
    "integer past bigint": (b'{"n": 9223372036854775808}', "too large"),
}


@pytest.mark.parametrize("case", BAD_JSON_BODIES)
def test_a_webhook_body_the_log_cannot_store_is_a_400_and_starts_nothing(client, olga, case):
    flow = triggered_flow(olga, webhook(), slug="hooks")
    body, message = BAD_JSON_BODIES[case]
    response = client.post(hook_url(flow), data=body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert message in response.json()["error"]
    assert not Run.objects.filter(flow=flow).exists()
    assert not DeliveryRecord.objects.filter(flow=flow).exists()


def test_the_largest_integer_the_log_stores_is_accepted(client, olga):
    flow = triggered_flow(olga, webhook(), slug="hooks")
    body = b'{"n": 9223372036854775807, "m": -9223372036854775807}'
    response = client.post(hook_url(flow), data=body, content_type="application/json")
    assert response.status_code == 202
    assert Run.objects.get(flow=flow).input["body"]["n"] == 2**63 - 1


def test_a_nul_in_a_query_header_or_key_is_a_400(client, olga):
    flow = triggered_flow(olga, webhook(), slug="hooks")
    url = hook_url(flow)
    body = {"data": b"{}", "content_type": "application/json"}
    query = client.post(url + "?source=a%00b", **body)
    assert query.status_code == 400 and "NUL" in query.json()["error"]
    header = client.post(url, headers={"X-Shop": "a\x00b"}, **body)
    assert header.status_code == 400 and "headers" in header.json()["error"]
    key = client.post(url, headers={"Idempotency-Key": "k\x00"}, **body)
    assert key.status_code == 400 and "key" in key.json()["error"]
    assert not Run.objects.filter(flow=flow).exists()


@pytest.mark.parametrize(
    "timestamp", ["9" * 400, "-" + "9" * 400, "1e400", "١٢٣", "nan", "inf", "+5", " 5"]
)
def test_a_signature_timestamp_that_is_no_timestamp_is_a_401(client, olga, timestamp):
    flow = triggered_flow(olga, webhook(credential=signing_credential(olga)), slug="hooks")
    response = client.post(
        hook_url(flow),
        data=b"{}",
        content_type="application/json",
        headers={"X-Ledgerflow-Signature": f"t={timestamp},v1=00"},
    )
    assert response.status_code == 401
    assert "timestamp" in response.json()["error"]


def test_unsigned_deliveries_to_a_paused_signed_flow_leave_no_trace(client, olga):
    flow = triggered_flow(olga, webhook(credential=signing_credential(olga)), slug="hooks")
    url = hook_url(flow)
    pause(flow, olga)
    events_before = Event.objects.filter(stream=f"triggers:{flow.pk}").count()
    for _ in range(5):
        response = client.post(url, data=b"{}", content_type="application/json")
        assert response.status_code == 401
    forged = client.post(
        url,
        data=b"{}",
        content_type="application/json",
        headers=signed(b"{}", int(time.time()), secret="wrong"),
    )
    assert forged.status_code == 401
    assert Event.objects.filter(stream=f"triggers:{flow.pk}").count() == events_before
    assert not DeliveryRecord.objects.filter(flow=flow).exists()
    # A correctly signed delivery is refused as before, and recorded once.
    good = client.post(
        url, data=b"{}", content_type="application/json", headers=signed(b"{}", int(time.time()))
    )
    assert good.status_code == 409
    assert DeliveryRecord.objects.filter(flow=flow, outcome="refused").count() == 1
    assert SeenSignature.objects.filter(flow=flow).count() == 1


BOUNDARY = "XyZ"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _part(name: str, value: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


BROKEN_MULTIPART = {
    "no boundary occurs": (MULTIPART, b"order=A-1&total=5"),
    "no closing boundary": (MULTIPART, _part("order", "A-1")),
    "a part without a name": (
        MULTIPART,
        _part("order", "A-1")
        + f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nlost\r\n--{BOUNDARY}--\r\n".encode(),
    ),
    "no boundary parameter": ("multipart/form-data", _part("order", "A-1") + b"--XyZ--\r\n"),
    "garbage": (MULTIPART, b"\x00\xff" * 50),
}


@pytest.mark.parametrize("case", BROKEN_MULTIPART)
def test_a_broken_multipart_body_is_a_400_and_starts_nothing(client, olga, case):
    flow = triggered_flow(olga, webhook(), slug="hooks")
    content_type, body = BROKEN_MULTIPART[case]
    response = client.post(hook_url(flow), data=body, content_type=content_type)
    assert response.status_code == 400, response.content
    assert "multipart" in response.json()["error"] or "form" in response.json()["error"]
    assert not Run.objects.filter(flow=flow).exists()


def test_a_well_formed_multipart_body_still_starts_a_run(client, olga):
    flow = triggered_flow(olga, webhook(), slug="hooks")
    body = _part("order", "A-1") + _part("total", "5") + f"--{BOUNDARY}--\r\n".encode()
    response = client.post(hook_url(flow), data=body, content_type=MULTIPART)
    assert response.status_code == 202
    assert Run.objects.get(flow=flow).input["body"] == {"order": "A-1", "total": "5"}
    uploaded = client.post(hook_url(flow), {"order": "A-2", "receipt": _UploadedFile()})
    assert uploaded.status_code == 202


class _UploadedFile:
    """What the test client sends as a file part."""

    name = "receipt.txt"

    def read(self):
        return b"paid"


# --- Forms, graph save, import and the API --------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "quantity": {"type": "integer"}},
}


def _start_url(flow) -> str:
    return reverse("flows:start_run", kwargs={"slug": flow.slug})


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"name": "\\ud800"}', "surrogate"),
        ('{"name": "a\\u0000"}', "NUL"),
        (f'{{"n": {BIG_INT}}}', "too large"),
        (f'{{"n": {HUGE_INT}}}', "Not valid JSON"),
        (f'{{"n": {HUGE_FLOAT}}}', "too large"),
        ('{"n": NaN}', "Not valid JSON"),
        ("[" * 5000 + "]" * 5000, "Not valid JSON"),
    ],
)
def test_the_json_start_form_shows_an_error_for_what_cannot_be_stored(client, olga, text, message):
    flow = triggered_flow(olga, {"type": "trigger.manual", "config": {}}, slug="manual")
    response = login(client, olga).post(_start_url(flow), {"input": text})
    assert response.status_code == 422
    errors = response.context["start_form"].errors["input"]
    assert any(message in error for error in errors), errors
    assert not Run.objects.filter(flow=flow).exists()


def test_the_typed_start_form_refuses_an_integer_too_large(client, olga):
    manual = {"type": "trigger.manual", "config": {"input_schema": SCHEMA}}
    flow = triggered_flow(olga, manual, slug="manual")
    response = login(client, olga).post(_start_url(flow), {"order_id": "A", "quantity": BIG_INT})
    assert response.status_code == 422
    assert "too large" in str(response.context["start_form"].errors["quantity"])
    nul = client.post(_start_url(flow), {"order_id": "A\x00", "quantity": "1"})
    assert nul.status_code == 400 and b"'order_id' contains a NUL character" in nul.content
    urlencoded = client.post(
        _start_url(flow),
        "order_id=A%00&quantity=1",
        content_type="application/x-www-form-urlencoded",
    )
    assert urlencoded.status_code == 400 and b"NUL" in urlencoded.content
    assert not Run.objects.filter(flow=flow).exists()


def test_graph_save_shows_an_error_for_what_cannot_be_stored(client, olga, make_flow):
    flow = make_flow(olga, slug="graphs")
    url = reverse("flows:graph", kwargs={"slug": flow.slug})
    before = Event.objects.count()
    for text in ('{"nodes": [], "edges": [], "x": "\\udc00"}', f'{{"nodes": [{BIG_INT}]}}'):
        response = login(client, olga).post(url, {"graph": text, "note": ""})
        assert response.status_code in (200, 422)
        assert "cannot be stored" in response.content.decode()
    assert Event.objects.count() == before


@pytest.mark.parametrize(
    "document, message",
    [
        ('{"format": "ledgerflow/flow@1", "flow": {"name": "\\ud800", "slug": "x"}}', "surrogate"),
        ('{"format": "ledgerflow/flow@1", "flow": {"name": "n\\u0000", "slug": "x"}}', "NUL"),
        (
            '{"format": "ledgerflow/flow@1",'
            f' "flow": {{"name": "n", "slug": "x", "review_cadence_days": {BIG_INT}}}}}',
            "too large",
        ),
        (b'{"format": "\xff"}', "cannot read"),
        ("[" * 5000 + "]" * 5000, "cannot read"),
    ],
)
def test_import_refuses_what_cannot_be_stored(olga, tmp_path, document, message):
    path = tmp_path / "flow.json"
    if isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(document)
    before = Event.objects.count()
    with pytest.raises(CommandError, match=message):
        call_command("import_flow", str(path), "--as", "olga", stdout=io.StringIO())
    assert Event.objects.count() == before


API_BODIES = {
    "lone surrogate": b'{"config": {"url": "\\ud800"}}',
    "NUL": b'{"config": {"url": "\\u0000"}}',
    "invalid UTF-8": b'{"config": {"url": "\xff"}}',
    "1,900-digit integer": f'{{"config": {{"n": {BIG_INT}}}}}'.encode(),
    "5,000-digit integer": f'{{"config": {{"n": {HUGE_INT}}}}}'.encode(),
    "5,000-digit number": f'{{"config": {{"n": {HUGE_FLOAT}}}}}'.encode(),
    "NaN": b'{"config": {"n": NaN}}',
    "not JSON": b"{",
    "deep": b'{"config": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
}


@pytest.mark.parametrize("case", API_BODIES)
def test_the_api_answers_bad_bodies_with_400_or_422(client, olga, case):
    url = reverse("api:connector_test_connection", kwargs={"key": "http.request"})
    login(client, olga)
    token = client.get(reverse("flows:inventory")).cookies.get("csrftoken")
    headers = {"X-CSRFToken": token.value} if token else {}
    response = client.post(
        url, data=API_BODIES[case], content_type="application/json", headers=headers
    )
    assert response.status_code in (400, 422), response.content


def test_an_anonymous_api_post_is_401_not_a_csrf_403(db):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    url = reverse("api:connector_test_connection", kwargs={"key": "http.request"})
    response = client.post(url, data=b"{}", content_type="application/json")
    assert response.status_code == 401
    assert client.get(reverse("api:connectors")).status_code == 401


def test_a_logged_in_api_post_still_needs_the_csrf_token(olga):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    login(browser, olga)
    url = reverse("api:connector_test_connection", kwargs={"key": "http.request"})
    response = browser.post(url, data=b"{}", content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.content.decode()


@pytest.mark.parametrize(
    "facts, message",
    [
        ({"purpose": None}, "flow.purpose has the wrong type"),
        ({"review_cadence_days": "90"}, "flow.review_cadence_days has the wrong type"),
        ({"review_cadence_days": -1}, "flow.review_cadence_days"),
        ({"tags": "a,b"}, "flow.tags has the wrong type"),
        ({"slug": "not a slug!"}, "flow.slug"),
        ({"name": "x" * 151}, "flow.name"),
        ({"criticality": "apocalyptic"}, "flow.criticality"),
        ({"owner": 7}, "flow.owner must be a name"),
    ],
)
def test_import_refuses_facts_of_the_wrong_shape(olga, facts, message):
    from flows import transfer

    document = {"format": transfer.FORMAT, "flow": {"name": "N", "slug": "n", **facts}}
    with pytest.raises(transfer.TransferError, match=message):
        transfer.import_flow(document, actor=olga)
    assert not Event.objects.filter(stream__startswith="flow:").exists()


def test_every_page_sends_the_security_headers(client, olga):
    for response in (client.get(reverse("login")), login(client, olga).get("/flows/")):
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert "<script>" not in response.content.decode()
        assert " onsubmit=" not in response.content.decode()


@pytest.mark.parametrize("path", ["/hooks/%00/", "/hooks/a%00b/", "/approvals/link/%00/"])
def test_a_nul_in_the_path_is_a_400(client, olga, path):
    assert client.get(path).status_code == 400
    assert client.post(path, data=b"{}", content_type="application/json").status_code == 400
    assert login(client, olga).get(path).status_code == 400
