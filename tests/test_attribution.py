"""Who the log says acted: a person's own command carries the person; what
the engine decides as a consequence (steps scheduled and run inline, a run
finishing, failing or undoing) carries the engine, even when a person's
request drove the session that decided it."""

import pytest

from runs import driver
from runs.ground.models import Event
from runs.models import Run
from runs.session import ENGINE
from tests.engine_helpers import chain, publish, transform
from tests.payments_helpers import charge_node, report

pytestmark = pytest.mark.django_db

OLGA = "user:olga"
WAIT = {"id": "wait", "type": "delay", "config": {"seconds": 600}}


def log(run, after: int = 0) -> list[tuple[str, str]]:
    events = Event.objects.filter(stream=run.stream, seq__gt=after).order_by("seq")
    return list(events.values_list("type", "actor"))


def head(run) -> int:
    return Event.objects.filter(stream=run.stream).order_by("-seq").values_list("seq", flat=True)[0]


def only_first_is(person: str, entries: list[tuple[str, str]]) -> None:
    assert entries[0][1] == person, entries
    assert entries[1:], "the engine did nothing after the command"
    assert {actor for _, actor in entries[1:]} == {ENGINE}, entries


def test_a_person_starts_the_run_and_the_engine_runs_its_inline_steps(olga):
    flow = publish(olga, chain(transform("shape", n="{{ trigger.n }}"), transform("done", ok="1")))
    run = driver.start_run(flow=flow, input={"n": 3}, actor=OLGA)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.started_by == OLGA
    entries = log(run)
    assert entries[0] == ("run.started", OLGA)
    only_first_is(OLGA, entries)
    assert ("step.succeeded", ENGINE) in entries and entries[-1] == ("run.succeeded", ENGINE)


def test_a_triggers_own_facts_are_its_own_and_the_steps_the_engines(olga):
    flow = publish(olga, chain(transform("shape", n="{{ trigger.n }}")))
    run = driver.start_run(flow=flow, input={"n": 1}, actor="webhook:orders",
                           extra_events=[("delivery.noted", {"id": "d-1"})])  # fmt: skip
    entries = log(run)
    assert entries[:2] == [("run.started", "webhook:orders"), ("delivery.noted", "webhook:orders")]
    assert {actor for _, actor in entries[2:]} == {ENGINE}


def dead_lettered(olga) -> Run:
    graph = chain(transform("calc", x="{{ trigger.value.deep }}"), transform("after", ok="1"))
    run = driver.start_run(flow=publish(olga, graph, slug="calc"), input={}, actor=OLGA)
    run.refresh_from_db()
    assert run.status == "waiting"
    # The dead letter is the engine's verdict, not olga's.
    assert ("step.dead_lettered", ENGINE) in log(run)
    return run


def test_a_replayed_dead_letter_is_the_persons_and_the_rerun_the_engines(olga):
    run = dead_lettered(olga)
    before = head(run)
    driver.replay_dead_letter(
        run.pk, "calc", actor=OLGA, edited_input={"fields": {"x": "fixed"}}, edited=True
    )
    run.refresh_from_db()
    assert run.status == "succeeded"
    entries = log(run, after=before)
    assert entries[0] == ("step.replayed", OLGA)
    only_first_is(OLGA, entries)
    assert ("step.scheduled", ENGINE) in entries and entries[-1] == ("run.succeeded", ENGINE)


def test_a_discard_is_the_persons_the_failure_the_engines_and_so_is_a_resumption(olga):
    run = dead_lettered(olga)
    before = head(run)
    driver.discard_dead_letter(run.pk, "calc", actor=OLGA, reason="bad input")
    assert log(run, after=before) == [("step.discarded", OLGA), ("run.failed", ENGINE)]

    resumed = driver.resume_run(run.pk, actor=OLGA)
    entries = log(resumed)
    assert entries[0] == ("run.started", OLGA)
    only_first_is(OLGA, entries)


def test_a_cancel_is_the_persons(olga):
    run = driver.start_run(flow=publish(olga, chain(WAIT)), input={}, actor=OLGA)
    before = head(run)
    driver.cancel_run(run.pk, actor=OLGA, reason="no longer needed")
    assert log(run, after=before) == [("run.cancelled", OLGA)]


@pytest.mark.django_db(transaction=True)
def test_a_cancel_that_undoes_is_the_persons_and_the_undoing_the_engines(
    olga, payments, eager_celery
):
    charge = charge_node(payments)
    charge["compensation"] = {
        "type": "http.request",
        "config": {"method": "POST", "url": f"{payments.url}/refunds",
                   "json_body": {"charge_id": "{{ steps.charge.output.body.id }}"},
                   "honours_idempotency_key": True},
    }  # fmt: skip
    graph = {**chain(charge, WAIT), "settings": {"compensate_on_cancel": True}}
    flow = publish(olga, graph, slug="cancel-saga")
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "c-1", "amount": 3}, actor=OLGA)
    before = head(run)
    with eager_celery():
        driver.cancel_run(run.pk, actor=OLGA, reason="customer changed mind")
    run.refresh_from_db()
    assert run.status == "compensated" and report(payments)["refunds"] == 1
    entries = log(run, after=before)
    assert entries[0] == ("run.compensating", OLGA)
    only_first_is(OLGA, entries)
    assert entries[-1] == ("run.compensated", ENGINE)
