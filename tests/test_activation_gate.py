"""Activation is the inventory's gate: only an active flow (one that has an
owner, a runbook and a failure mode) starts runs. Every start passes it:
each trigger through intake, the flow page, the start_run command, a
sub-flow step, and replays."""

import json

import pytest
from django.urls import reverse

from connectors.triggers import intake
from connectors.triggers.models import DeliveryRecord, Receipt
from flows import services
from runs import driver
from runs.ground.models import Event
from runs.models import Run, Step
from tests.engine_helpers import chain, publish, transform
from tests.trigger_helpers import token_of, triggered_flow, webhook

DRAFT = "“calc” is a draft; it starts no runs until it is activated"
NEEDS_ALL = "(it needs an owner, a runbook and a failure mode first)"


def draft(olga, slug="calc", **facts):
    return publish(olga, chain(transform("a", x=1)), slug=slug, active=False, **facts)


@pytest.mark.parametrize("source", ["webhook", "schedule", "event", "queue"])
def test_no_trigger_starts_a_run_of_a_draft(olga, source):
    flow = draft(olga, owner=None, runbook="", failure_mode="")
    delivery = intake.Delivery(flow=flow, source=source, input={}, actor=source, key="k-1",
                               final_refusal=source != "webhook")  # fmt: skip
    outcome = intake.deliver(delivery)
    assert outcome.status == "refused" and outcome.flow_status == "draft"
    assert (
        outcome.message
        == f"“calc” is a draft; it starts no runs until it is activated {NEEDS_ALL}."
    )
    assert not Run.objects.exists()
    record = DeliveryRecord.objects.get(flow=flow)
    assert (record.outcome, record.detail["reason"]) == ("refused", outcome.message)


def test_a_webhook_to_a_draft_answers_409_and_runs_once_activated(client, olga):
    flow = triggered_flow(olga, webhook(), slug="hooks", active=False)
    url = reverse("triggers:webhook", kwargs={"token": token_of(flow)})
    body = json.dumps({"n": 1})
    send = lambda: client.post(url, data=body, content_type="application/json",  # noqa: E731
                               headers={"Idempotency-Key": "d-1"})  # fmt: skip
    refused = send()
    assert refused.status_code == 409
    assert refused.json()["error"] == "“hooks” is a draft; it starts no runs until it is activated."
    assert not Run.objects.exists() and not Receipt.objects.exists()
    assert Event.objects.filter(stream=f"triggers:{flow.pk}", type="delivery.refused").count() == 1
    services.flow_transition(flow=flow, actor=olga, action="activate")
    # The sender retries, as it would after a 409: now the flow runs it.
    assert send().status_code == 202
    assert Run.objects.filter(flow=flow).count() == 1


def test_page_and_direct_starts_of_a_draft_are_refused(olga):
    flow = draft(olga, failure_mode="")
    with pytest.raises(driver.StartRefused, match=r"needs a failure mode first\)"):
        driver.start_run(flow=flow, input={}, actor="user:olga")
    assert not Run.objects.exists()


def test_a_sub_flow_step_calling_a_draft_dead_letters_with_the_reason(olga, eager_celery):
    draft(olga, slug="child")
    call = {"id": "call", "type": "subflow", "config": {"flow": "child", "input": {}}}
    parent = publish(olga, chain(call), slug="parent")
    with eager_celery():
        run = driver.start_run(flow=parent, input={}, actor="u")
    step = Step.objects.get(run=run, node_id="call")
    assert step.status == "dead_lettered"
    assert "“child” is a draft; it starts no runs until it is activated" in step.error
    assert Run.objects.count() == 1


def test_replaying_a_run_of_a_flow_paused_since_is_refused(olga, eager_celery):
    flow = publish(olga, chain(transform("a", x=1)), slug="calc")
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    services.flow_transition(flow=flow, actor=olga, action="pause")
    with pytest.raises(driver.StartRefused, match="“calc” is paused; it starts no runs."):
        driver.replay_run(run.pk, actor="user:olga")
