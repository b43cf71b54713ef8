"""The CRM connector against the fake CRM (fakeapi/crm.py), a real server
on 127.0.0.1: OAuth2 client credentials refreshed on 401, query pages,
upsert by external id, create, composite batch, 429 with Retry-After."""

import datetime as dt

import pytest

from connectors import base
from runs import driver
from runs.ground import clock
from runs.models import Step
from tests.connector_helpers import run_connector
from tests.crm_helpers import control, crm_credential, report
from tests.engine_helpers import chain, publish

ACCOUNTS = [{"Id": f"acc_{n}", "Name": f"Account {n}", "Rank": n} for n in range(7)]


def upsert(value, **fields):
    return {"credential": "crm", "operation": "upsert", "object_type": "Contact",
            "external_id_field": "Customer_Id__c", "external_id": value,
            "fields": fields}  # fmt: skip


def test_an_expired_token_is_fetched_again_once_and_the_call_goes_through(db, crm):
    crm_credential(crm)
    run_connector("crm", upsert("c-1", Email="a@example.com"))
    assert report(crm)["token_requests"] == 1
    run_connector("crm", upsert("c-2", Email="b@example.com"))
    assert report(crm)["token_requests"] == 1  # cached in the process

    control(crm, expire_tokens=True)
    result = run_connector("crm", upsert("c-3", Email="c@example.com"))
    assert result.output["created"] is True
    seen = report(crm)
    assert seen["token_requests"] == 2 and seen["unauthorised"] == 1
    assert seen["writes"] == {"Contact/Customer_Id__c/c-1": 1, "Contact/Customer_Id__c/c-2": 1,
                              "Contact/Customer_Id__c/c-3": 1}  # fmt: skip


def test_a_wrong_client_secret_fails_before_any_api_call(db, crm):
    crm_credential(crm, secret="not-the-right-secret")
    with pytest.raises(base.ConnectorError) as failed:
        run_connector("crm", upsert("c-1"))
    assert "invalid_client" in str(failed.value) and not failed.value.may_have_been_sent
    assert report(crm)["requests"] == 0


def test_the_credential_goes_only_to_its_allowed_hosts(db, crm):
    from connectors.credentials import store as credentials

    row = crm_credential(crm)
    credentials.credential_allow_hosts(credential=row, actor="system:test",
                                       allowed_hosts=["crm.example.com:443"])  # fmt: skip
    with pytest.raises(base.ConnectorError) as refused:
        run_connector("crm", upsert("c-1"))
    assert "may not be sent" in str(refused.value) and not refused.value.may_have_been_sent
    assert report(crm)["token_requests"] == 0


def test_a_query_follows_next_records_url_up_to_its_limit(db, crm):
    crm_credential(crm)
    control(crm, seed={"Account": ACCOUNTS}, page_size=3)
    soql = "SELECT Id, Name FROM Account WHERE Rank >= 1 ORDER BY Id"
    out = run_connector("crm", {"credential": "crm", "operation": "query", "soql": soql}).output
    assert [r["Id"] for r in out["records"]] == [f"acc_{n}" for n in range(1, 7)]
    assert (out["pages"], out["total_size"], out["truncated"]) == (2, 6, False)
    assert report(crm)["query_pages"] == 2

    query = {"credential": "crm", "operation": "query", "soql": "SELECT Id FROM Account"}
    capped = run_connector("crm", {**query, "max_records": 4}).output
    assert len(capped["records"]) == 4 and capped["pages"] == 2 and capped["truncated"]
    connector = base.get("crm")
    assert connector.side_effect(connector.Config.model_validate(query)) == "none"


def test_an_upsert_by_external_id_is_idempotent(db, crm):
    crm_credential(crm)
    first = run_connector("crm", upsert("c-9", Email="x@example.com", Name="X")).output
    again = run_connector("crm", upsert("c-9", Email="x@example.com", Name="X")).output
    assert (first["status"], first["created"]) == (201, True)
    assert (again["status"], again["created"]) == (204, False)
    seen = report(crm)
    assert list(seen["records"]) == ["Contact/Customer_Id__c/c-9"]
    assert seen["conflicts"] == []  # the same content: nothing changed at the CRM
    connector = base.get("crm")
    assert connector.side_effect(connector.Config.model_validate(upsert("c-9"))) == "idempotent"


def create_flow(olga, crm, **config):
    step = {"id": "create", "type": "crm",
            "config": {"credential": "crm", "operation": "create", "object_type": "Case",
                       "fields": {"Subject": "{{ trigger.subject }}"}, **config},
            "retry": {"max_attempts": 3, "initial_seconds": 10, "jitter": 0}}  # fmt: skip
    return publish(olga, chain(step), slug="crm-create")


def test_a_create_that_may_have_been_sent_is_not_retried(olga, crm, eager_celery, sweep_at):
    crm_credential(crm)
    flow = create_flow(olga, crm)
    control(crm, fail_after_write_next=1)  # the CRM creates, then answers 500
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(start), eager_celery():
        run = driver.start_run(flow=flow, input={"subject": "Broken"}, actor="u")
    sweep_at(start + dt.timedelta(minutes=5))
    step = Step.objects.get(run=run, node_id="create")
    assert step.status == "dead_lettered" and step.outcome_unknown, step.error
    assert step.attempt == 1 and report(crm)["creates"] == 1


def test_a_create_with_a_dedup_field_retries_without_a_second_record(
    olga, crm, eager_celery, sweep_at
):
    crm_credential(crm)
    flow = create_flow(olga, crm, dedup_field="Ledgerflow_Key__c")
    control(crm, fail_after_write_next=1)
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(start), eager_celery():
        run = driver.start_run(flow=flow, input={"subject": "Broken"}, actor="u")
    assert Step.objects.get(run=run, node_id="create").status == "retrying"
    sweep_at(start + dt.timedelta(seconds=11))
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    step = Step.objects.get(run=run, node_id="create")
    seen = report(crm)
    key = f"Case/Ledgerflow_Key__c/{step.idempotency_key}"
    assert seen["writes"] == {key: 2} and list(seen["records"]) == [key]  # one record
    assert seen["creates"] == 0 and seen["conflicts"] == []


def test_a_composite_batch_runs_each_request_and_answers_each(db, crm):
    crm_credential(crm)
    config = {"credential": "crm", "operation": "batch", "requests": [
        {"method": "PATCH", "url": "v59.0/sobjects/Contact/Customer_Id__c/b-1",
         "rich_input": {"Email": "b1@example.com"}},
        {"method": "PATCH", "url": "v59.0/sobjects/Contact/Customer_Id__c/b-2",
         "rich_input": {"Email": "b2@example.com"}},
        {"method": "GET", "url": "v59.0/query?q=SELECT Id FROM Contact"},
    ]}  # fmt: skip
    out = run_connector("crm", config).output
    assert [r["statusCode"] for r in out["results"]] == [201, 201, 200]
    assert out["has_errors"] is False and out["results"][2]["result"]["totalSize"] == 2
    seen = report(crm)
    assert seen["batches"] == 1 and sorted(seen["writes"]) == [
        "Contact/Customer_Id__c/b-1", "Contact/Customer_Id__c/b-2"]  # fmt: skip
    connector = base.get("crm")
    assert connector.side_effect(connector.Config.model_validate(config)) == "idempotent"
    config["requests"].append({"method": "POST", "url": "v59.0/sobjects/Case",
                               "rich_input": {"Subject": "s"}})  # fmt: skip
    assert connector.side_effect(connector.Config.model_validate(config)) == "unsafe"


def test_a_429_is_retryable_not_sent_and_carries_its_retry_after(db, crm):
    crm_credential(crm)
    control(crm, rate_limit_next=1, retry_after=7)
    with pytest.raises(base.ConnectorError) as limited:
        run_connector("crm", upsert("c-1", Email="a@example.com"))
    assert limited.value.retryable and limited.value.retry_after == 7
    assert not limited.value.may_have_been_sent
    assert report(crm)["writes"] == {}


def test_a_step_waits_for_the_crm_retry_after(olga, crm, eager_celery, sweep_at):
    crm_credential(crm)
    flow = create_flow(olga, crm)  # unsafe, yet a 429 proves nothing was done
    control(crm, rate_limit_next=1, retry_after=120)
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(start), eager_celery():
        run = driver.start_run(flow=flow, input={"subject": "Later"}, actor="u")
    step = Step.objects.get(run=run, node_id="create")
    assert step.status == "retrying" and step.due_at == start + dt.timedelta(seconds=120)
    sweep_at(start + dt.timedelta(seconds=121))
    run.refresh_from_db()
    assert run.status == "succeeded" and report(crm)["creates"] == 1


def test_a_crm_credential_is_used_with_its_token_and_instance_hosts(db):
    from connectors.credentials.hosts import hosts_used

    fields = {"token_url": "https://login.crm.example/services/oauth2/token",
              "instance_url": "https://EU1.crm.example:8443", "client_id": "x"}  # fmt: skip
    assert hosts_used("crm", "crm_oauth", fields) == [
        "eu1.crm.example:8443", "login.crm.example:443"]  # fmt: skip
