"""The "Order fulfilment" saga with the payments and inventory connectors
against the local fake API: charge -> reserve -> confirm. When the
reservation cannot be made, the charge is refunded exactly once (the payments
connector's own undo) and the run ends compensated."""

import datetime as dt
import json

import pytest

from flows.graph import InvalidGraph, validate
from flows.management.commands.seed_demo import order_graph
from runs import decider, driver
from runs.ground import clock
from runs.ground.eventstore import verify_stream
from runs.ground.models import Event
from runs.models import Step
from tests.engine_helpers import chain, publish
from tests.payments_helpers import control, report

START = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def saga_graph(api_url: str, reserve_attempts: int = 1, on_failure: str = "fail_run") -> dict:
    graph = order_graph()
    for node in graph["nodes"]:
        if "base_url" in node.get("config", {}):
            node["config"]["base_url"] = api_url
        if node["id"] == "reserve":
            node["retry"] = {"max_attempts": reserve_attempts, "initial_seconds": 5, "jitter": 0}
            node["on_failure"] = on_failure
    return graph


def steps(run) -> dict[str, Step]:
    return {s.node_id: s for s in Step.objects.filter(run=run)}


def order(n: str) -> dict:
    return {"order_id": n, "amount": 42, "sku": "BOOK-1"}


def test_a_healthy_order_is_charged_reserved_and_confirmed(olga, payments, eager_celery):
    flow = publish(olga, saga_graph(payments.url), slug="order-fulfilment")
    with eager_celery():
        run = driver.start_run(flow=flow, input=order("A-1"), actor="u")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    confirm = steps(run)["confirm"].output
    assert confirm["charge_id"].startswith("ch_") and confirm["reservation_id"].startswith("rs_")
    seen = report(payments)
    assert seen["orders"]["A-1"] == {"keys": [steps(run)["charge"].idempotency_key],
                                     "charges": 1, "refunds": 0}  # fmt: skip
    assert seen["inventory"]["orders"]["A-1"] == {"reservations": 1, "released": 0}


def test_a_refused_reservation_refunds_the_charge_exactly_once(olga, payments, eager_celery):
    flow = publish(olga, saga_graph(payments.url), slug="order-fulfilment")
    control(payments, inventory_fail_next=1, inventory_fail_status=409)  # not retryable
    with eager_celery():
        run = driver.start_run(flow=flow, input=order("A-2"), actor="u")
    run.refresh_from_db()
    by_node = steps(run)
    # The demo's reservation fails the run (on_failure: fail_run): no person
    # needs to discard anything before the charge is refunded.
    assert by_node["reserve"].status == "failed" and "answered 409" in by_node["reserve"].error
    assert run.status == "compensated" and "answered 409" in run.error
    assert by_node["charge"].status == "compensated"
    undo = by_node["charge~undo"]
    assert undo.status == "succeeded" and undo.output["charge_id"] == by_node["charge"].output[
        "charge_id"
    ]  # fmt: skip
    assert undo.idempotency_key == decider.idempotency_key(
        root_run_id=run.pk, node="charge", phase="undo"
    )
    seen = report(payments)
    assert seen["orders"]["A-2"]["charges"] == 1 and seen["orders"]["A-2"]["refunds"] == 1
    assert seen["refunds"] == 1 and seen["inventory"]["reservations"] == 0
    assert verify_stream(run.stream) is None


def test_a_reservation_that_dead_letters_waits_for_a_person_then_compensates(
    olga, payments, eager_celery
):
    graph = saga_graph(payments.url, on_failure="dead_letter")
    flow = publish(olga, graph, slug="order-fulfilment")
    control(payments, inventory_fail_next=1, inventory_fail_status=409)
    with eager_celery():
        run = driver.start_run(flow=flow, input=order("A-4"), actor="u")
    reserve = steps(run)["reserve"]
    assert reserve.status == "dead_lettered" and "answered 409" in reserve.error
    assert report(payments)["refunds"] == 0  # nothing undone while a person decides
    with eager_celery():
        driver.discard_dead_letter(run.pk, "reserve", actor="user:olga", reason="out of stock")
    run.refresh_from_db()
    assert run.status == "compensated" and "out of stock" in run.error
    seen = report(payments)
    assert seen["orders"]["A-4"]["charges"] == 1 and seen["orders"]["A-4"]["refunds"] == 1


def test_an_inventory_api_that_stays_down_ends_compensated_after_its_retries(
    olga, payments, eager_celery, sweep_at
):
    flow = publish(olga, saga_graph(payments.url, reserve_attempts=2), slug="order-fulfilment")
    control(payments, inventory_down=True)
    with clock.frozen_at(START), eager_celery():
        run = driver.start_run(flow=flow, input=order("A-3"), actor="u")
    assert steps(run)["reserve"].status == "retrying"
    later = START + dt.timedelta(seconds=6)
    sweep_at(later)
    reserve = steps(run)["reserve"]
    assert reserve.status == "failed" and len(reserve.errors) == 2
    run.refresh_from_db()
    assert run.status == "compensated" and "retries exhausted" in run.error
    seen = report(payments)
    assert seen["orders"]["A-3"]["charges"] == 1 and seen["orders"]["A-3"]["refunds"] == 1
    assert seen["inventory"]["requests"] == 2


def test_a_failure_after_the_reservation_releases_it_then_refunds(olga, payments, eager_celery):
    graph = saga_graph(payments.url)
    graph["nodes"].append({"id": "ship", "type": "http.request", "retry": {"max_attempts": 1},
                           "config": {"method": "POST", "url": f"{payments.url}/nowhere",
                                      "honours_idempotency_key": True}})  # fmt: skip
    graph["edges"].append({"from": "confirm", "to": "ship"})
    flow = publish(olga, graph, slug="order-fulfilment")
    with eager_celery():
        run = driver.start_run(flow=flow, input=order("A-4"), actor="u")
    assert steps(run)["ship"].status == "dead_lettered"
    with eager_celery():
        driver.discard_dead_letter(run.pk, "ship", actor="user:olga", reason="no carrier")
    run.refresh_from_db()
    assert run.status == "compensated"
    undone = [
        e.payload["node"]
        for e in Event.objects.filter(stream=run.stream, type="step.compensation_scheduled")
        .order_by("seq")
    ]  # fmt: skip
    assert undone == ["reserve~undo", "charge~undo"]  # newest effect first
    seen = report(payments)
    assert seen["inventory"]["orders"]["A-4"] == {"reservations": 1, "released": 1}
    assert seen["orders"]["A-4"]["refunds"] == 1


def test_default_compensation_needs_a_connector_with_its_own_undo():
    graph = chain({"id": "call", "type": "http.request", "compensation": "default",
                   "config": {"method": "POST", "url": "http://127.0.0.1:1/x"}})  # fmt: skip
    with pytest.raises(InvalidGraph, match="has no undo of its own"):
        validate(graph)


def test_the_charge_step_input_in_the_log_never_holds_the_api_key(olga, payments, eager_celery):
    from connectors.credentials.store import credential_create

    credential_create(actor=olga, name="payments-api", type="bearer", fields={},
                      secrets={"token": "sk_live_do_not_log"},
                      allowed_hosts=["127.0.0.1"])  # fmt: skip
    graph = saga_graph(payments.url)
    graph["nodes"][3]["config"]["credential"] = "payments-api"
    flow = publish(olga, graph, slug="order-fulfilment")
    with eager_celery():
        run = driver.start_run(flow=flow, input=order("A-5"), actor="u")
    assert steps(run)["charge"].input["credential"] == "payments-api"
    assert steps(run)["charge"].status == "succeeded"
    bodies = Event.objects.filter(stream=run.stream).values_list("body", flat=True)
    assert not any("sk_live_do_not_log" in body for body in bodies)


def test_the_demo_seeds_the_order_fulfilment_saga():
    graph = validate(order_graph())
    types = {node["id"]: node["type"] for node in graph["nodes"]}
    assert types["charge"] == "payments.charge" and types["reserve"] == "inventory.reserve"
    assert all(n.get("compensation") == {"default": True, "retry": n["compensation"]["retry"]}
               for n in graph["nodes"] if n["id"] in ("charge", "reserve"))  # fmt: skip


def test_the_saga_exports_and_imports_to_the_same_canonical_file(olga):
    from flows import transfer

    document = {"format": "ledgerflow/flow@1",
                "flow": {"slug": "order-fulfilment", "name": "Order fulfilment"},
                "graph": order_graph()}  # fmt: skip
    flow = transfer.import_flow(document, actor=olga)
    exported = transfer.export_flow(flow)
    assert exported == transfer.canonical_text(transfer.canonical_document(document))
    again = transfer.import_flow(json.loads(exported), actor=olga)
    assert again.published_version == 1


@pytest.mark.parametrize("spec", [{}, "undo", {"type": "http.request", "default": True}])
def test_a_malformed_compensation_is_explained(spec):
    graph = chain({"id": "call", "type": "payments.charge", "compensation": spec,
                   "config": {"order_id": "o", "amount": 1}})  # fmt: skip
    with pytest.raises(InvalidGraph) as caught:
        validate(graph)
    assert 'field “compensation”: "default" (the connector\'s own undo), or an object' in str(
        caught.value
    )
