"""The recovery sweep re-sends a scheduled step whose message was lost at
most once per ``LEDGERFLOW_REDISPATCH_SECONDS``, however often it ticks: a
step that waits in a long queue is not sent again on every tick."""

import datetime as dt
import io

import pytest
from django.core.management import call_command

from config.celery import app
from runs import driver, sweeper
from runs.ground import clock
from runs.models import Step
from tests.engine_helpers import chain, publish
from tests.projection_helpers import projected_rows

START = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
QUEUE = "celery"


def queued_messages() -> int:
    """Messages waiting on the real broker's default queue."""
    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(queue=QUEUE).message_count


def purge() -> None:
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)


@pytest.fixture
def empty_queue():
    with app.connection_for_write() as connection:
        connection.default_channel.queue_declare(queue=QUEUE)
        connection.default_channel.queue_purge(QUEUE)
    yield
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)


def lost_step(olga, payments) -> Step:
    """A run whose side-effecting step was scheduled, and whose message was
    never sent (the test's transaction never commits, so nothing is)."""
    charge = {
        "id": "charge",
        "type": "http.request",
        "config": {"method": "POST", "url": f"{payments.url}/charges",
                   "json_body": {"order_id": "{{ trigger.order_id }}"},
                   "honours_idempotency_key": True},
    }  # fmt: skip
    flow = publish(olga, chain(charge), slug="lost")
    with clock.frozen_at(START):
        run = driver.start_run(flow=flow, input={"order_id": "x-1"}, actor="user:olga")
    step = Step.objects.get(run=run, node_id="charge")
    assert step.status == "scheduled" and step.scheduled_at == START
    return step


def tick(seconds: float) -> int:
    moment = START + dt.timedelta(seconds=seconds)
    with clock.frozen_at(moment):
        return sweeper.sweep(moment)["redispatched"]


def tick_then_lose(seconds: float) -> int:
    sent = tick(seconds)
    purge()
    return sent


def test_a_lost_step_is_resent_once_per_interval_however_often_the_sweep_ticks(
    olga, payments, settings, empty_queue
):
    settings.LEDGERFLOW_REDISPATCH_SECONDS = 30
    step = lost_step(olga, payments)
    assert [tick(s) for s in range(2, 31, 2)] == [0] * 15  # not lost yet
    # Sixteen ticks two seconds apart, all within one interval: one re-send,
    # even though each re-sent message is taken by a worker that dies with it
    # (purged: gone from the queue).
    assert [tick_then_lose(s) for s in range(31, 62, 2)] == [1] + [0] * 15
    step.refresh_from_db()
    assert (step.redispatches, step.redispatched_at) == (1, START + dt.timedelta(seconds=31))
    # The interval has passed since the last re-send: once more.
    assert [tick(s) for s in range(63, 93, 2)] == [1] + [0] * 14
    step.refresh_from_db()
    assert (step.redispatches, step.redispatched_at) == (2, START + dt.timedelta(seconds=63))
    assert queued_messages() == 1
    # The step was never rescheduled: its projected time has not moved.
    assert (step.status, step.scheduled_at) == ("scheduled", START)


def test_resends_are_bookkeeping_that_a_rebuild_leaves_out(olga, payments, settings, empty_queue):
    settings.LEDGERFLOW_REDISPATCH_SECONDS = 30
    step = lost_step(olga, payments)
    before = projected_rows()
    assert tick(31) == 1
    purge()  # taken by a worker that died
    assert tick(63) == 1
    assert projected_rows() == before  # only unprojected columns changed
    call_command("rebuild_projections", stdout=io.StringIO())
    assert projected_rows() == before
    rebuilt = Step.objects.get(run_id=step.run_id, node_id="charge")
    assert (rebuilt.redispatches, rebuilt.redispatched_at) == (0, None)


def test_a_step_whose_message_still_waits_in_the_queue_is_not_resent(
    olga, payments, settings, empty_queue
):
    """Under a backlog longer than the interval a queued message is not lost:
    re-sending it every interval only lengthened the queue it waited in (the
    kill drill's backlog fed on five re-sends per step)."""
    settings.LEDGERFLOW_REDISPATCH_SECONDS = 30
    step = lost_step(olga, payments)
    assert tick(31) == 1  # never published: lost, re-sent
    assert queued_messages() == 1
    # The re-sent message waits behind a long queue: interval after interval,
    # nothing more is sent.
    assert [tick(s) for s in range(63, 300, 32)] == [0] * 8
    assert queued_messages() == 1
    step.refresh_from_db()
    assert step.redispatches == 1
    # Another step's message does not count as this one's.
    other = lost_step(olga, payments)
    assert tick(301) == 1
    assert queued_messages() == 2
    # The worker that took this step's message died with it: re-sent within
    # an interval.
    purge()
    assert tick(333) == 2
    step.refresh_from_db()
    other.refresh_from_db()
    assert (step.redispatches, other.redispatches) == (2, 2)
