"""Test runs of a flow's draft (/api/v1/flows/<slug>/test-runs): through the
real engine on an immutable snapshot of the draft, marked as test runs and
kept out of the flow's figures, side effects only once confirmed, pinned
outputs instead of running a node, single steps, and the test webhook URL."""

import time

import pytest
from django.urls import reverse

from connectors.triggers import testhooks
from connectors.triggers.webhook_receiver import sign
from flows import services
from flows.models import DraftSnapshot
from runs import driver
from runs.ground.models import Event
from runs.models import Run, Step
from tests.conftest import login
from tests.engine_helpers import READY, transform
from tests.localserver import Reply


@pytest.fixture
def flow(olga, make_flow):
    return make_flow(olga, owner=olga, **READY)


def graph_of(*nodes: dict, trigger: dict | None = None, **extra) -> dict:
    chain = [trigger or {"id": "start", "type": "trigger.manual"}, *nodes]
    edges = [{"from": a["id"], "to": b["id"]} for a, b in zip(chain, chain[1:], strict=False)]
    return {"nodes": chain, "edges": edges, **extra}


def http_get(node_id: str, url: str) -> dict:
    return {"id": node_id, "type": "http.request", "config": {"method": "GET", "url": url}}


def save(flow, actor, graph):
    services.flow_save_draft(flow=flow, actor=actor, graph=graph)
    flow.refresh_from_db()
    return flow


def start(client, flow, eager_celery, **body):
    url = reverse("api:flow_test_runs", kwargs={"slug": flow.slug})
    with eager_celery():
        return client.post(url, {"input": {}, **body}, content_type="application/json")


def read(client, flow, run_id):
    url = reverse("api:flow_test_run", kwargs={"slug": flow.slug, "run_id": run_id})
    return client.get(url).json()


def steps_of(body) -> dict:
    return {s["node"]: s for s in body["steps"]}


def counting_server(local_server, body=None):
    return local_server({"/item": lambda seen: Reply(200, body or {"price": 7})})


def test_a_draft_flow_is_test_run_through_the_engine_and_stays_a_draft(
    client, olga, flow, local_server, eager_celery
):
    server = counting_server(local_server)
    save(flow, olga, graph_of(
        transform("shape", amount="{{ trigger.amount }}"),
        http_get("lookup", f"{server.url}/item"),
    ))  # fmt: skip
    login(client, olga)
    response = start(client, flow, eager_celery, input={"amount": 12})
    assert response.status_code == 200, response.content
    body = read(client, flow, response.json()["id"])
    assert body["status"] == "succeeded" and body["settled"] and body["is_test"]
    steps = steps_of(body)
    assert steps["shape"]["output"] == {"amount": 12}
    assert steps["lookup"]["output"]["body"] == {"price": 7}
    assert steps["lookup"]["input"]["url"] == f"{server.url}/item"
    assert steps["lookup"]["attempts"] == 1 and steps["lookup"]["carried_from"] is None
    run = Run.objects.get(pk=body["id"])
    assert run.is_test and run.version_number == 0 and len(server.seen) == 1
    flow.refresh_from_db()
    assert flow.status == "draft" and flow.published_version == 0
    snapshot = DraftSnapshot.objects.get(flow=flow)
    assert run.test_snapshot == snapshot.graph_hash
    assert Event.objects.filter(stream=flow.stream, type="test.snapshot_pinned").count() == 1
    started = Event.objects.get(stream=run.stream, type="run.started")
    assert started.payload["test_snapshot"] == snapshot.graph_hash


def test_the_activation_gate_still_refuses_production_starts_of_a_draft(olga, flow):
    save(flow, olga, graph_of(transform("shape", ok=True)))
    with pytest.raises(driver.StartRefused, match="is a draft"):
        driver.start_run(flow=flow, input={}, actor="user:olga")


def test_editing_the_draft_after_a_test_run_leaves_that_runs_graph_alone(
    client, olga, flow, eager_celery
):
    save(flow, olga, graph_of(transform("shape", version="one")))
    login(client, olga)
    first = start(client, flow, eager_celery).json()["id"]
    again = start(client, flow, eager_celery).json()["id"]
    # An unchanged draft reuses its snapshot: one event, one row.
    assert DraftSnapshot.objects.filter(flow=flow).count() == 1
    save(flow, olga, graph_of(transform("shape", version="two"), transform("more", x=1)))
    third = start(client, flow, eager_celery).json()["id"]
    assert DraftSnapshot.objects.filter(flow=flow).count() == 2
    old = driver.graph_for(Run.objects.get(pk=first))
    assert set(old.nodes) == {"start", "shape"}
    assert old.nodes["shape"]["config"] == {"fields": {"version": "one"}}
    assert steps_of(read(client, flow, again))["shape"]["output"] == {"version": "one"}
    assert steps_of(read(client, flow, third))["shape"]["output"] == {"version": "two"}
    # A replay of the first test run runs its own snapshot, not the new draft.
    with eager_celery():
        replay = driver.replay_run(first, actor="user:olga")
    assert replay.is_test and replay.test_snapshot == Run.objects.get(pk=first).test_snapshot
    assert Step.objects.get(run=replay, node_id="shape").output == {"version": "one"}


def test_side_effecting_nodes_run_only_once_confirmed(client, olga, flow, payments, eager_celery):
    charge = {"id": "charge", "type": "http.request", "config": {
        "method": "POST", "url": f"{payments.url}/charges",
        "json_body": {"order_id": "T-1", "amount": 5}}}  # fmt: skip
    save(flow, olga, graph_of(transform("shape", ok=True), charge))
    login(client, olga)
    refused = start(client, flow, eager_celery)
    assert refused.status_code == 409
    assert refused.json()["nodes"] == [
        {"node": "charge", "type": "http.request", "side_effect": "unsafe"}
    ]
    assert "charge (http.request: unsafe)" in refused.json()["detail"]
    assert not Run.objects.filter(flow=flow).exists()
    assert not DraftSnapshot.objects.filter(flow=flow).exists()
    assert payments.state.report()["charges"] == 0
    confirmed = start(client, flow, eager_celery, confirm_side_effects=True)
    assert confirmed.status_code == 200
    assert read(client, flow, confirmed.json()["id"])["status"] == "succeeded"
    assert payments.state.report()["charges"] == 1


def test_a_pinned_node_is_not_executed_and_its_pin_never_reaches_production(
    client, olga, flow, local_server, eager_celery
):
    server = counting_server(local_server)
    pinned = {"status": 200, "body": {"price": 99}, "headers": {}}
    graph = graph_of(http_get("lookup", f"{server.url}/item"),
                     transform("shape", price="{{ steps.lookup.output.body.price }}"),
                     pinned={"lookup": pinned})  # fmt: skip
    save(flow, olga, graph)
    login(client, olga)
    run_id = start(client, flow, eager_celery).json()["id"]
    steps = steps_of(read(client, flow, run_id))
    assert server.seen == []
    assert steps["lookup"]["status"] == "succeeded" and steps["lookup"]["output"] == pinned
    assert steps["lookup"]["carried_from"] == "pinned"
    assert steps["shape"]["output"] == {"price": 99}
    recorded = Event.objects.get(stream=f"run:{run_id}", type="test.output_pinned")
    assert recorded.payload == {"node": "lookup", "source": "pinned"}
    # Published without its pins; a production run calls the server.
    version = services.flow_publish(flow=flow, actor=olga)
    assert "pinned" not in version.graph
    services.flow_transition(flow=flow, actor=olga, action="activate")
    flow.refresh_from_db()
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="user:olga")
    assert Step.objects.get(run=run, node_id="shape").output == {"price": 7}
    assert len(server.seen) == 1


def test_pinned_data_must_name_nodes_and_be_plain_json(client, olga, flow):
    login(client, olga)
    url = reverse("api:flow_validate", kwargs={"slug": flow.slug})
    graph = graph_of(transform("shape", ok=True), pinned={"ghost": {"a": 1}})
    errors = client.post(url, {"graph": graph}, content_type="application/json").json()["errors"]
    assert errors == [{"message": "pinned data names no node of this graph", "node": None,
                       "field": "pinned.ghost"}]  # fmt: skip
    bad = graph_of(transform("shape", ok=True), pinned={"shape": {"n": 2**70}})
    errors = client.post(url, {"graph": bad}, content_type="application/json").json()["errors"]
    assert errors[0]["node"] == "shape" and "too large" in errors[0]["message"]


def test_run_this_step_uses_the_last_test_run_and_runs_nothing_after_it(
    client, olga, flow, local_server, eager_celery
):
    server = counting_server(local_server)
    save(flow, olga, graph_of(
        transform("shape", item="item"),
        http_get("lookup", f"{server.url}/{{{{ steps.shape.output.item }}}}"),
        transform("after", seen="{{ steps.lookup.output.body }}"),
    ))  # fmt: skip
    login(client, olga)
    missing = start(client, flow, eager_celery, node="lookup")
    assert missing.status_code == 422
    assert missing.json()["missing"] == ["shape"]
    assert "neither pinned data nor an output" in missing.json()["detail"]
    full = start(client, flow, eager_celery).json()["id"]
    assert len(server.seen) == 1
    single = start(client, flow, eager_celery, node="lookup")
    assert single.status_code == 200
    body = read(client, flow, single.json()["id"])
    steps = steps_of(body)
    assert body["status"] == "succeeded" and set(steps) == {"start", "shape", "lookup"}
    assert steps["shape"]["carried_from"] == f"test run {full}"
    assert steps["lookup"]["output"]["body"] == {"price": 7}
    assert len(server.seen) == 2


def test_run_this_step_prefers_pinned_data_of_the_nodes_before_it(
    client, olga, flow, local_server, eager_celery
):
    server = local_server({"/pinned-item": lambda seen: Reply(200, {"ok": True})})
    save(flow, olga, graph_of(
        transform("shape", item="live-item"),
        http_get("lookup", f"{server.url}/{{{{ steps.shape.output.item }}}}"),
        pinned={"shape": {"item": "pinned-item"}},
    ))  # fmt: skip
    login(client, olga)
    body = read(client, flow, start(client, flow, eager_celery, node="lookup").json()["id"])
    assert steps_of(body)["shape"]["carried_from"] == "pinned"
    assert [s.path for s in server.seen] == ["/pinned-item"]


def test_test_runs_stay_out_of_the_flow_page_and_the_dead_letter_queue(
    client, olga, flow, local_server, eager_celery
):
    server = local_server({"/bad": lambda seen: Reply(400, {"error": "no"})})
    save(flow, olga, graph_of(http_get("lookup", f"{server.url}/bad")))
    login(client, olga)
    run_id = start(client, flow, eager_celery).json()["id"]
    body = read(client, flow, run_id)
    assert steps_of(body)["lookup"]["status"] == "dead_lettered" and body["settled"]
    assert "400" in steps_of(body)["lookup"]["error"]
    page = client.get(reverse("flows:detail", kwargs={"slug": flow.slug}))
    assert f"/runs/{run_id}/" not in page.content.decode()
    assert "1 test run of the draft" in page.content.decode()
    assert list(page.context["runs"]) == []
    letters = client.get(reverse("runs:dead_letters"))
    assert letters.context["groups"] == []
    run_page = client.get(reverse("runs:detail", kwargs={"run_id": run_id})).content.decode()
    assert "Test run" in run_page and 'data-testid="test-run"' in run_page


def test_bad_requests_get_clear_answers(client, olga, rita, flow, eager_celery):
    login(client, olga)
    nothing = start(client, flow, eager_celery)
    assert nothing.status_code == 400 and "no draft" in nothing.json()["error"]["message"]
    save(flow, olga, graph_of(transform("shape", x="{{ steps.later.output }}"),
                              transform("later", y=1)))  # fmt: skip
    invalid = start(client, flow, eager_celery)
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["node"] == "shape"
    save(flow, olga, graph_of(transform("shape", ok=True)))
    unknown = start(client, flow, eager_celery, node="ghost")
    assert unknown.status_code == 400 and "no node “ghost”" in unknown.json()["error"]["message"]
    url = reverse("api:flow_test_runs", kwargs={"slug": flow.slug})
    too_big = client.post(url, '{"input": {"n": 1e400}}', content_type="application/json")
    assert too_big.status_code in (400, 422)
    assert not Run.objects.filter(flow=flow).exists()
    login(client, rita)  # a reviewer may not run the draft
    assert start(client, flow, eager_celery).status_code == 403


# --- the test webhook URL ------------------------------------------------------


def webhook_draft(flow, actor, *nodes, **config):
    trigger = {"id": "hook", "type": "trigger.webhook", "config": config}
    return save(flow, actor, graph_of(*(nodes or [transform("seen", n="{{ trigger.body.n }}")]),
                                      trigger=trigger))  # fmt: skip


def test_a_webhook_draft_has_a_test_url_whose_deliveries_start_test_runs(
    client, olga, flow, eager_celery
):
    webhook_draft(flow, olga)
    login(client, olga)
    draft = client.get(reverse("api:flow_draft", kwargs={"slug": flow.slug})).json()
    url = draft["test_webhook_url"]
    assert url.endswith(f"/hooks/test/{testhooks.token_for(flow.pk)}/")
    client.logout()
    with eager_celery():
        response = client.post(url, {"n": 3}, content_type="application/json")
    assert response.status_code == 202, response.content
    assert response.json()["test_run"] is True
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.is_test and run.status == "succeeded" and run.started_by == "webhook:test"
    assert Step.objects.get(run=run, node_id="seen").output == {"n": 3}
    flow.refresh_from_db()
    assert flow.status == "draft"
    wrong = url.replace(testhooks.token_for(flow.pk), f"{flow.pk}.{'0' * 40}")
    assert client.post(wrong, {"n": 1}, content_type="application/json").status_code == 404


def test_the_test_url_keeps_the_live_urls_signature_check(client, olga, flow, eager_celery):
    from connectors.credentials import store as credentials

    credentials.credential_create(actor=olga, name="hook-signing", type="hmac", fields={},
                                  secrets={"secret": "s3cret-for-hooks"})  # fmt: skip
    webhook_draft(flow, olga, credential="hook-signing", tolerance_seconds=60)
    url = reverse("triggers:test_webhook", kwargs={"token": testhooks.token_for(flow.pk)})
    body = b'{"n": 1}'
    assert client.post(url, body, content_type="application/json").status_code == 401
    now = int(time.time())
    header = {"X-Ledgerflow-Signature": f"t={now},v1={sign('s3cret-for-hooks', now, body)}"}
    with eager_celery():
        good = client.post(url, body, content_type="application/json", headers=header)
    assert good.status_code == 202
    replayed = client.post(url, body, content_type="application/json", headers=header)
    assert replayed.status_code == 401 and "already used" in replayed.json()["error"]
    assert Run.objects.filter(flow=flow, is_test=True).count() == 1


def test_the_test_url_asks_for_confirmation_of_side_effects(
    client, olga, flow, payments, eager_celery
):
    charge = {"id": "charge", "type": "http.request", "config": {
        "method": "POST", "url": f"{payments.url}/charges",
        "json_body": {"order_id": "W-1", "amount": 5}}}  # fmt: skip
    webhook_draft(flow, olga, charge)
    url = reverse("triggers:test_webhook", kwargs={"token": testhooks.token_for(flow.pk)})
    refused = client.post(url, {}, content_type="application/json")
    assert refused.status_code == 409 and "charge (http.request: unsafe)" in refused.json()["error"]
    with eager_celery():
        confirmed = client.post(
            url + "?confirm_side_effects=true", {}, content_type="application/json"
        )
    assert confirmed.status_code == 202
    run = Run.objects.get(pk=confirmed.json()["run_id"])
    assert run.input["query"] == {} and payments.state.report()["charges"] == 1


def test_a_draft_without_a_webhook_trigger_has_no_test_url(client, olga, flow):
    save(flow, olga, graph_of(transform("shape", ok=True)))
    login(client, olga)
    draft = client.get(reverse("api:flow_draft", kwargs={"slug": flow.slug})).json()
    assert draft["test_webhook_url"] is None
    url = reverse("triggers:test_webhook", kwargs={"token": testhooks.token_for(flow.pk)})
    assert client.post(url, {}, content_type="application/json").status_code == 404
