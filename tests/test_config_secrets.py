"""Secrets stay out of the immutable log: a graph may not hold one, the
payments and inventory connectors take theirs from a credential, old keys
move into credentials, and the events that still hold one are listed."""

import copy
import io
import json

import pytest
from django.core.management import call_command

from connectors.credentials import store as credentials
from connectors.credentials.hosts import fill_allowed_hosts
from connectors.credentials.models import Credential
from connectors.credentials.store import credential_create
from flows import secret_moves as moves
from flows import services
from flows.graph import graph_hash, normalise
from flows.models import Flow, FlowVersion
from runs import driver
from runs.ground import projectors
from runs.ground.eventstore import NewEvent, append_many, verify_stream
from runs.ground.models import Event
from tests.conftest import login
from tests.engine_helpers import READY, activate, chain, publish
from tests.localserver import Reply

KEY = "sk_live_4f9a2c7e1b"
# Old keys are not credentials yet; each test its own, since the store's
# redaction cache (per process) may still know a key another test stored.
OLD_KEYS = iter(f"sk_live_old_{n:04d}_c3e77a" for n in range(1000))


def http_node(**config) -> dict:
    return {"id": "call", "type": "http.request",
            "config": {"method": "POST", "url": "http://127.0.0.1:1/x", **config}}  # fmt: skip


def draft_events(flow) -> int:
    return Event.objects.filter(stream=flow.stream, type="flow.draft_saved").count()


# --- saving a draft ----------------------------------------------------------------


@pytest.mark.parametrize(
    "node, where",
    [
        (http_node(headers={"X-Api-Key": KEY}), "config.headers.X-Api-Key"),
        (http_node(headers={"authorization": f"Bearer {KEY}"}), "config.headers.authorization"),
        (http_node(headers={"Authorization": "Bearer {{ trigger.t }}"}),
         "config.headers.Authorization"),  # literal text around an expression
        (http_node(query={"access_token": KEY}), "config.query.access_token"),
        (http_node(json_body={"auth": {"password": 123456789}}), "config.json_body.auth.password"),
        (http_node(json_body={"client_secret": ["a", KEY]}), "config.json_body.client_secret[1]"),
        (http_node(headers={"X-Token": "{{ 'sk_live_inside_expression' }}"}),
         "config.headers.X-Token"),
        ({"id": "call", "type": "payments.charge",
          "config": {"order_id": "o", "amount": 1, "api_key": KEY}}, "config.api_key"),
        ({**http_node(), "compensation": {"type": "http.request", "config": {
            "method": "POST", "url": "http://127.0.0.1:1/undo", "headers": {"X-API-KEY": KEY}}}},
         "compensation.config.headers.X-API-KEY"),
    ],
)  # fmt: skip
def test_saving_a_draft_with_a_literal_secret_is_refused_and_records_nothing(
    olga, make_flow, node, where
):
    flow = make_flow(olga, slug="leaky")
    before = draft_events(flow)
    with pytest.raises(services.SecretInGraph) as refused:
        services.flow_save_draft(flow=flow, actor=olga, graph=chain(node))
    assert f"field “{where}”" in str(refused.value)
    assert "store it as a credential" in str(refused.value)
    assert draft_events(flow) == before
    assert not any(KEY in body for body in Event.objects.values_list("body", flat=True))


@pytest.mark.parametrize(
    "config",
    [
        {"headers": {"Authorization": "{{ steps.login.output.token }}"}},
        {"headers": {"X-Api-Key": "{{ trigger['api_key'] }}"}},
        {"headers": {"Authorization": "{{ 'Bearer ' ~ trigger.token }}"}},
        {"query": {"token": ""}, "honours_idempotency_key": True},
        {"credential": "payments-api", "headers": {"Accept": "application/json"}},
    ],
)
def test_expressions_flags_and_credential_names_are_fine(olga, make_flow, config):
    flow = make_flow(olga, slug="clean")
    services.flow_save_draft(flow=flow, actor=olga, graph=chain(http_node(**config)))
    assert draft_events(flow) == 1


def test_the_graph_page_says_to_use_a_credential(client, olga, make_flow):
    flow = make_flow(olga, slug="leaky-page")
    graph = chain(http_node(headers={"X-Api-Key": KEY}))
    response = login(client, olga).post(
        f"/flows/{flow.slug}/graph/", {"graph": json.dumps(graph), "action": "save"}
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "store it as a credential" in page and "config.headers.X-Api-Key" in page
    assert draft_events(flow) == 0


def test_an_import_with_a_literal_secret_is_refused(olga):
    from flows import transfer

    document = {
        "format": transfer.FORMAT,
        "flow": {"name": "Imported", "slug": "imported", "owner": "olga"},
        "graph": chain(http_node(headers={"X-Api-Key": KEY})),
    }
    with pytest.raises(ValueError, match="store it as a credential"):
        transfer.import_flow(document, actor=olga)
    assert not any(KEY in body for body in Event.objects.values_list("body", flat=True))


# --- payments and inventory take their key from a credential ----------------------


def test_the_charge_sends_the_credentials_token_and_the_log_never_sees_it(
    olga, local_server, eager_celery
):
    def charge(seen):
        body = json.loads(seen.body)
        return Reply(200, {"id": "ch_1", "order_id": body["order_id"], "amount": body["amount"]})

    server = local_server({"/charges": charge})
    credential_create(actor=olga, name="payments-api", type="bearer", fields={},
                      secrets={"token": KEY},
                      allowed_hosts=[f"127.0.0.1:{server.port}"])  # fmt: skip
    node = {"id": "charge", "type": "payments.charge",
            "config": {"base_url": server.url, "order_id": "{{ trigger.order_id }}",
                       "amount": 5, "credential": "payments-api"}}  # fmt: skip
    flow = publish(olga, chain(node), slug="charging")
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "A-1"}, actor="user:olga")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert server.seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert not any(KEY in body for body in Event.objects.values_list("body", flat=True))


# --- moving old keys into credentials ------------------------------------------------


def old_graph(url: str, key: str) -> dict:
    """A graph as saved before keys left configs: both connectors hold one."""
    return normalise(chain(
        {"id": "charge", "type": "payments.charge", "compensation": "default",
         "config": {"base_url": url, "order_id": "{{ trigger.order_id }}", "amount": 5,
                    "api_key": key}},
        {"id": "reserve", "type": "inventory.reserve",
         "config": {"base_url": url, "order_id": "{{ trigger.order_id }}", "sku": "B",
                    "api_key": key}},
    ))  # fmt: skip


def record_old_flow(flow, graph: dict) -> None:
    """Append the events an older release wrote (draft and version 1 with
    the key), exactly as they would be in the log now."""
    events = [
        NewEvent(stream=flow.stream, type="flow.draft_saved",
                 payload={"flow_id": flow.pk, "graph": graph}, actor="user:olga"),
        NewEvent(stream=flow.stream, type="flow.published", actor="user:olga",
                 payload={"flow_id": flow.pk, "number": 1, "graph": graph,
                          "graph_hash": graph_hash(graph), "note": ""}),
    ]  # fmt: skip
    projectors.project(append_many(events))


def test_the_migration_moves_keys_into_a_credential_and_old_versions_still_run(
    olga, make_flow, payments, eager_celery
):
    flow = make_flow(olga, slug="old-orders", owner=olga, **READY)
    key = next(OLD_KEYS)
    record_old_flow(flow, old_graph(payments.url, key))
    assert key in Event.objects.filter(stream=flow.stream).last().body
    report = moves.move_config_secrets()
    assert any("moved to credential migrated-old-orders-charge" in line for line in report)
    credential = Credential.objects.get(name="migrated-old-orders-charge")
    assert credential.type == "bearer" and Credential.objects.count() == 1  # one per key
    assert credentials.credential_secrets(credential.name) == {"token": key}
    version = FlowVersion.objects.get(flow=flow, number=1)
    for graph in (version.graph, type(flow).objects.get(pk=flow.pk).draft_graph):
        text = json.dumps(graph)
        assert key not in text and "api_key" not in text
        assert text.count('"credential": "migrated-old-orders-charge"') == 2
    assert version.graph_hash == graph_hash(version.graph)
    # The moved event itself holds no key, and the chain still verifies.
    moved = Event.objects.get(stream=flow.stream, type="flow.secrets_moved")
    assert key not in moved.body
    verify_stream(flow.stream)
    # Version 1 is still what runs (once the next migration gives the new
    # credential the host its flows use): the charge and the reservation succeed.
    assert fill_allowed_hosts() == [
        f"migrated-old-orders-charge: allowed hosts {payments.url.split('//')[1]}"
    ]
    flow = activate(Flow.objects.get(pk=flow.pk), olga)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "M-1"}, actor="user:olga")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    # A second run of the migration changes nothing.
    assert moves.move_config_secrets() == []


def test_a_rebuild_keeps_the_moved_graphs(olga, make_flow):
    flow = make_flow(olga, slug="old-rebuilt")
    record_old_flow(flow, old_graph("http://127.0.0.1:8765", next(OLD_KEYS)))
    moves.move_config_secrets()
    moved = copy.deepcopy(FlowVersion.objects.get(flow=flow, number=1).graph)
    call_command("rebuild_projections", stdout=io.StringIO())
    assert FlowVersion.objects.get(flow=flow, number=1).graph == moved
    assert type(flow).objects.get(pk=flow.pk).draft_graph == moved


def test_the_command_lists_events_holding_a_secret_and_says_to_rotate(olga, make_flow):
    flow = make_flow(olga, slug="old-listed")
    key = next(OLD_KEYS)
    record_old_flow(flow, old_graph("http://127.0.0.1:8765", key))
    moves.move_config_secrets()
    out = io.StringIO()
    call_command("find_logged_secrets", stdout=out)
    text = out.getvalue()
    assert f"{flow.stream}#" in text and "flow.draft_saved" in text and "flow.published" in text
    assert "node charge config.api_key" in text and "node reserve config.api_key" in text
    assert "rotate" in text and "cannot be rewritten" in text
    assert key not in text  # it says where, never what
    assert "flow.secrets_moved" not in text


def test_the_command_is_quiet_on_a_clean_log(olga, make_flow):
    services.flow_save_draft(flow=make_flow(olga, slug="clean-log"), actor=olga,
                             graph=chain(http_node()))  # fmt: skip
    out = io.StringIO()
    call_command("find_logged_secrets", stdout=out)
    assert "No event holds a secret" in out.getvalue()


def test_a_credential_is_named_not_computed_from_run_data():
    from flows.graph import InvalidGraph, validate

    with pytest.raises(InvalidGraph, match="name the credential itself"):
        validate(chain(http_node(credential="{{ trigger.which }}")))
