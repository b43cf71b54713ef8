"""Webhook triggers: a flow's own URL, signatures, size limits, dedup keys,
ordering, paused and retired flows, and the answer of a Respond node."""

import datetime as dt
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from django.core.management import call_command
from django.urls import reverse

from connectors.credentials import store as credentials
from connectors.triggers import intake
from connectors.triggers.models import Binding, DeliveryRecord, Receipt, Watermark
from connectors.triggers.webhook_receiver import sign
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run
from tests.conftest import login
from tests.engine_helpers import transform
from tests.trigger_helpers import pause, retire, token_of, triggered_flow, webhook

SECRET = "whsec-shared-between-us"


def hook_url(flow) -> str:
    return reverse("triggers:webhook", kwargs={"token": token_of(flow)})


def post_json(client, url, body, **headers):
    return client.post(url, data=json.dumps(body), content_type="application/json", headers=headers)


def test_a_delivery_starts_a_run_with_the_body_as_input(client, olga, eager_celery):
    flow = triggered_flow(
        olga, webhook(), transform("seen", order="{{ trigger.body.order }}"), slug="hooks"
    )
    with eager_celery():
        response = post_json(
            client,
            hook_url(flow) + "?source=shop",
            {"order": "A-1"},
            **{"X-Shop": "north", "Authorization": "Bearer secret"},
        )
    assert response.status_code == 202
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.status == "succeeded" and run.output["seen"]["order"] == "A-1"
    assert run.input["query"] == {"source": "shop"}
    assert run.input["headers"]["x-shop"] == "north"
    assert "authorization" not in run.input["headers"]
    accepted = Event.objects.get(stream=run.stream, type="trigger.accepted")
    assert accepted.payload["source"] == "webhook"


def test_form_bodies_become_the_input(client, olga):
    flow = triggered_flow(olga, webhook(), slug="hooks")
    response = client.post(
        hook_url(flow),
        data="order=A-2&tag=x&tag=y",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 202
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.input["body"] == {"order": "A-2", "tag": ["x", "y"]}
    multipart = client.post(hook_url(flow), {"order": "A-3"})
    assert multipart.status_code == 202
    assert Run.objects.get(pk=multipart.json()["run_id"]).input["body"] == {"order": "A-3"}


def test_webhook_with_same_key_starts_one_run(client, olga):
    flow = triggered_flow(olga, webhook(), slug="hooks")
    first = post_json(client, hook_url(flow), {"n": 1}, **{"Idempotency-Key": "k-1"})
    again = post_json(client, hook_url(flow), {"n": 2}, **{"Idempotency-Key": "k-1"})
    other = post_json(client, hook_url(flow), {"n": 3}, **{"Idempotency-Key": "k-2"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json() == first.json()
    assert again["Ledgerflow-Duplicate"] == "true"
    assert Run.objects.filter(flow=flow).count() == 2


def test_a_configured_body_field_is_the_dedup_key(client, olga):
    flow = triggered_flow(olga, webhook(dedup_field="delivery.id"), slug="hooks")
    first = post_json(client, hook_url(flow), {"delivery": {"id": 7}})
    again = post_json(client, hook_url(flow), {"delivery": {"id": 7}, "extra": True})
    assert (first.status_code, again.status_code) == (202, 200)
    assert Run.objects.filter(flow=flow).count() == 1


def test_bad_bodies_get_clear_answers_and_start_nothing(client, olga):
    flow = triggered_flow(olga, webhook(max_body_bytes=100), slug="hooks")
    deep_flow = triggered_flow(olga, webhook(), slug="hooks-deep")
    url = hook_url(flow)
    too_big = post_json(client, url, {"blob": "x" * 200})
    assert too_big.status_code == 413 and "100 bytes" in too_big.json()["error"]
    broken = client.post(url, data="{not json", content_type="application/json")
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]
    for not_plain_json in ('{"n": NaN}', '{"n": 1e400}'):
        refused = client.post(url, data=not_plain_json, content_type="application/json")
        assert refused.status_code in (400, 413), not_plain_json
    nested = client.post(
        hook_url(deep_flow), data="[" * 100 + "]" * 100, content_type="application/json"
    )
    assert nested.status_code == 400
    deep = client.post(
        hook_url(deep_flow), data="[" * 5000 + "]" * 5000, content_type="application/json"
    )
    assert deep.status_code == 400 and "nested" in deep.json()["error"]
    xml = client.post(url, data="<a/>", content_type="application/xml")
    assert xml.status_code == 415
    assert client.get(url).status_code == 405
    assert (
        client.post("/hooks/not-a-token/", data="{}", content_type="application/json").status_code
        == 404
    )
    assert Run.objects.filter(flow=flow).count() == 0


def test_paused_and_retired_flows_refuse_deliveries_and_record_them(client, olga):
    flow = triggered_flow(olga, webhook(), slug="hooks")
    url = hook_url(flow)
    pause(flow, olga)
    paused = post_json(client, url, {"n": 1}, **{"Idempotency-Key": "p-1"})
    assert paused.status_code == 409 and "paused" in paused.json()["error"]
    retire(flow, olga)
    retired = post_json(client, url, {"n": 1})
    assert retired.status_code == 410 and "retired" in retired.json()["error"]
    assert Run.objects.filter(flow=flow).count() == 0
    records = list(DeliveryRecord.objects.filter(flow=flow).order_by("seq"))
    assert [(r.outcome, r.detail["flow_status"]) for r in records] == [
        ("refused", "paused"),
        ("refused", "retired"),
    ]
    assert Event.objects.filter(stream=f"triggers:{flow.pk}", type="delivery.refused").count() == 2


def signed(body: bytes, timestamp: int, secret: str = SECRET) -> dict:
    return {"X-Ledgerflow-Signature": f"t={timestamp},v1={sign(secret, timestamp, body)}"}


def signing_credential(owner, name: str = "hook-signing") -> str:
    credentials.credential_create(
        actor=owner, name=name, type="hmac", fields={}, secrets={"secret": SECRET}
    )
    return name


def test_signed_deliveries_are_checked(client, olga):
    config = webhook(credential=signing_credential(olga), tolerance_seconds=60)
    flow = triggered_flow(olga, config, slug="hooks")
    url = hook_url(flow)
    body = b'{"order": "S-1"}'
    now = int(time.time())

    def send(headers, data=body):
        return client.post(url, data=data, content_type="application/json", headers=headers)

    assert send({}).status_code == 401
    assert send(signed(body, now, secret="wrong")).status_code == 401
    stale = send(signed(body, now - 120))
    assert stale.status_code == 401 and "tolerance" in stale.json()["error"]
    assert send(signed(b'{"order": "other"}', now)).status_code == 401  # body changed
    good = signed(body, now)
    assert send(good).status_code == 202
    replayed = send(good)
    assert replayed.status_code == 401 and "already used" in replayed.json()["error"]
    assert Run.objects.filter(flow=flow).count() == 1


def test_an_older_delivery_for_an_entity_is_dropped_as_stale(client, olga):
    flow = triggered_flow(
        olga, webhook(ordering_field="version", entity_field="order.id"), slug="hooks"
    )
    url = hook_url(flow)
    assert post_json(client, url, {"order": {"id": "A"}, "version": 2}).status_code == 202
    stale = post_json(client, url, {"order": {"id": "A"}, "version": 1})
    assert stale.status_code == 200 and stale.json() == {"run_id": None, "stale": True}
    assert post_json(client, url, {"order": {"id": "B"}, "version": 1}).status_code == 202
    assert post_json(client, url, {"order": {"id": "A"}, "version": 3}).status_code == 202
    missing = post_json(client, url, {"order": {"id": "A"}})
    assert missing.status_code == 422
    assert Run.objects.filter(flow=flow).count() == 3
    record = DeliveryRecord.objects.get(flow=flow)
    assert (record.outcome, record.detail["entity"], record.detail["position"]) == ("stale", "A", 1)
    assert Watermark.objects.get(flow=flow, entity="A").position == 3


def respond_node(**config) -> dict:
    return {"id": "answer", "type": "webhook.respond", "config": config}


def test_the_respond_node_answers_the_waiting_delivery(client, olga):
    answer = respond_node(
        status=201,
        headers={"X-Order": "{{ trigger.body.order }}"},
        body={"order": "{{ trigger.body.order }}", "accepted": True},
    )
    flow = triggered_flow(olga, webhook(respond="respond_node"), answer, slug="hooks")
    response = post_json(client, hook_url(flow), {"order": "R-1"})
    assert response.status_code == 201
    assert response.json() == {"order": "R-1", "accepted": True}
    assert response["X-Order"] == "R-1"
    assert Run.objects.filter(pk=int(response["Ledgerflow-Run"])).exists()


def test_a_response_that_takes_too_long_falls_back_to_202(client, olga):
    wait = {"id": "wait", "type": "delay", "config": {"seconds": 600}}
    flow = triggered_flow(
        olga,
        webhook(respond="respond_node", response_timeout_seconds=0.3),
        wait,
        respond_node(body="late"),
        slug="hooks",
    )
    began = time.monotonic()
    response = post_json(client, hook_url(flow), {})
    assert response.status_code == 202 and response.json()["run_id"]
    assert 0.25 < time.monotonic() - began < 5


def test_rotating_the_url_retires_the_old_one(client, olga, rita):
    flow = triggered_flow(olga, webhook(), slug="hooks")
    old = hook_url(flow)
    page = login(client, olga).get(reverse("flows:detail", kwargs={"slug": flow.slug}))
    assert old in page.content.decode()
    client.post(reverse("triggers:rotate_webhook", kwargs={"slug": flow.slug}))
    new = hook_url(flow)
    assert new != old
    client.logout()
    assert post_json(client, old, {}).status_code == 404
    assert post_json(client, new, {}).status_code == 202
    reviewer_page = login(client, rita).get(reverse("flows:detail", kwargs={"slug": flow.slug}))
    assert new not in reviewer_page.content.decode()


def test_old_keys_are_purged_after_the_retention_window(client, olga, settings):
    settings.LEDGERFLOW_WEBHOOK_KEY_RETENTION_HOURS = 1
    flow = triggered_flow(olga, webhook(), slug="hooks")
    start = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
    with clock.frozen_at(start):
        assert (
            post_json(client, hook_url(flow), {}, **{"Idempotency-Key": "old"}).status_code == 202
        )
    assert intake.purge(start + dt.timedelta(minutes=30))["webhook_keys"] == 0
    assert intake.purge(start + dt.timedelta(hours=2))["webhook_keys"] == 1
    again = post_json(client, hook_url(flow), {}, **{"Idempotency-Key": "old"})
    assert again.status_code == 202
    assert Run.objects.filter(flow=flow).count() == 2


def test_rebuild_derives_the_same_trigger_rows(client, olga):
    flow = triggered_flow(olga, webhook(ordering_field="v", entity_field="id"), slug="hooks")
    url = hook_url(flow)
    post_json(client, url, {"id": "A", "v": 2}, **{"Idempotency-Key": "a2"})
    post_json(client, url, {"id": "A", "v": 2}, **{"Idempotency-Key": "a2"})
    post_json(client, url, {"id": "A", "v": 1}, **{"Idempotency-Key": "a1"})
    post_json(client, url, {"id": "B", "v": 5})
    pause(flow, olga)
    post_json(client, url, {"id": "B", "v": 6})

    def snapshot():
        return {
            "bindings": list(Binding.objects.values()),
            "receipts": sorted(
                Receipt.objects.values_list("flow_id", "source", "key", "run_id", "outcome", "at")
            ),
            "marks": sorted(Watermark.objects.values_list("flow_id", "entity", "position")),
            "records": list(
                DeliveryRecord.objects.order_by("flow_id", "seq").values(
                    "flow_id", "seq", "source", "outcome", "key", "detail", "at"
                )
            ),
        }

    before = snapshot()
    assert len(before["receipts"]) == 2 and len(before["records"]) == 2
    for model in (Binding, Receipt, Watermark, DeliveryRecord):
        model.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert snapshot() == before


def test_a_thousand_concurrent_deliveries_with_fifty_keys_start_fifty_runs(olga, asgi_server):
    flow = triggered_flow(olga, webhook(), slug="hooks-load")
    url = f"http://{asgi_server}{hook_url(flow)}"
    local = threading.local()

    def send(index: int) -> tuple[str, int, int]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
        key = f"key-{index % 50}"
        response = local.client.post(url, json={"n": index}, headers={"Idempotency-Key": key})
        return key, response.status_code, response.json()["run_id"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(send, range(1000)))
    statuses = [status for _, status, _ in answers]
    assert statuses.count(202) == 50 and statuses.count(200) == 950
    run_per_key: dict[str, set[int]] = {}
    for key, _, run_id in answers:
        run_per_key.setdefault(key, set()).add(run_id)
    assert all(len(ids) == 1 for ids in run_per_key.values())
    assert Run.objects.filter(flow=flow).count() == 50
    assert Receipt.objects.filter(flow=flow).count() == 50


def test_over_asgi_a_delivery_waits_for_the_respond_node(olga, asgi_server):
    answer = respond_node(status=200, body="{{ 'thanks ' ~ trigger.body.name }}")
    flow = triggered_flow(olga, webhook(respond="respond_node"), answer, slug="hooks-asgi")
    response = httpx.post(f"http://{asgi_server}{hook_url(flow)}", json={"name": "Ada"}, timeout=30)
    assert response.status_code == 200 and response.text == "thanks Ada"
    assert response.headers["content-type"].startswith("text/plain")


def test_racing_versions_of_one_entity_are_accepted_only_in_increasing_order(olga, asgi_server):
    flow = triggered_flow(
        olga, webhook(ordering_field="version", entity_field="id"), slug="hooks-order"
    )
    url = f"http://{asgi_server}{hook_url(flow)}"

    def send(version: int) -> int:
        with httpx.Client(timeout=60) as client:
            return client.post(url, json={"id": "A", "version": version}).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(send, range(1, 41)))
    assert set(statuses) <= {200, 202}
    accepted = [r.input["body"]["version"] for r in Run.objects.filter(flow=flow).order_by("pk")]
    # The entity's row is locked while each delivery decides, so runs start
    # in lock order and never go back to an older version.
    assert accepted == sorted(set(accepted)) and accepted[-1] == 40
    assert statuses.count(202) == len(accepted)
    assert DeliveryRecord.objects.filter(flow=flow, outcome="stale").count() == 40 - len(accepted)
    assert Watermark.objects.get(flow=flow, entity="A").position == 40


def test_a_webhook_whose_signing_credential_is_gone_answers_503_and_starts_nothing(client, olga):
    flow = triggered_flow(olga, webhook(credential="no-such-credential"), slug="hooks")
    body = b'{"order": "S-2"}'
    now = int(time.time())
    response = client.post(
        hook_url(flow), data=body, content_type="application/json", headers=signed(body, now)
    )
    assert response.status_code == 503 and "no-such-credential" in response.json()["error"]
    assert Run.objects.filter(flow=flow).count() == 0


def test_the_signing_secret_never_reaches_the_event_log(client, olga):
    flow = triggered_flow(olga, webhook(credential=signing_credential(olga)), slug="hooks")
    body = b'{"order": "S-3"}'
    response = client.post(
        hook_url(flow), data=body, content_type="application/json",
        headers=signed(body, int(time.time())),
    )  # fmt: skip
    assert response.status_code == 202
    assert not Event.objects.filter(body__contains=SECRET).exists()
