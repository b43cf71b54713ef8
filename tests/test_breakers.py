"""Circuit breakers and rate limits, against the real local payments API, real
Redis (and, on the embedded default's path, the database). Time is moved
with the one clock; the breakers read it too."""

import datetime as dt
import io
import threading

import pytest
from django.core.management import call_command
from django.db import connection

from connectors.outbound import breakers
from connectors.outbound.models import Breaker, StoreFault
from runs import driver, sweeper
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Step, Timer
from tests.conftest import login
from tests.engine_helpers import chain, publish
from tests.localserver import free_port
from tests.payments_helpers import charge_node, control, report

START = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
POLICY = {"failures": 3, "window_seconds": 60, "cooldown_seconds": 30}


@pytest.fixture(params=["redis", "database"])
def store(request, settings):
    """Every behaviour holds on Redis and on the embedded default's database."""
    if request.param == "database":
        settings.LEDGERFLOW_BREAKER_REDIS_URL = ""
    settings.LEDGERFLOW_BREAKER_DEFAULTS = POLICY
    settings.LEDGERFLOW_BREAKER_RELEASE_PER_SECOND = 5
    return request.param


def charge_flow(olga, payments, slug="breaker-orders", **overrides):
    retry = {"max_attempts": 5, "initial_seconds": 1, "multiplier": 1, "jitter": 0}
    return publish(olga, chain(charge_node(payments, retry=retry, **overrides)), slug=slug)


def target_of(payments) -> str:
    return payments.url.removeprefix("http://")


def start(flow, eager_celery, order: str, at=START):
    with clock.frozen_at(at), eager_celery():
        return driver.start_run(flow=flow, input={"order_id": order, "amount": 5}, actor="u")


def charge(run) -> Step:
    return Step.objects.get(run=run, node_id="charge")


def breaker_events(target: str) -> list[str]:
    return list(
        Event.objects.filter(stream=f"breaker:{target}")
        .order_by("seq")
        .values_list("type", flat=True)
    )


def open_the_breaker(olga, payments, eager_celery) -> list:
    """Three runs whose charges fail with 503: the third failure opens it."""
    flow = charge_flow(olga, payments)
    control(payments, fail_next=3, fail_status=503)
    return [start(flow, eager_celery, f"f-{n}") for n in range(3)], flow


def test_a_breaker_opens_after_n_failures_and_held_steps_spend_no_attempt(
    olga, payments, eager_celery, store, sweep_at, client
):
    failed, flow = open_the_breaker(olga, payments, eager_celery)
    target = target_of(payments)
    assert breaker_events(target) == ["breaker.opened"]
    row = Breaker.objects.get(target=target)
    assert (row.state, row.failures, row.opened_at) == ("open", 3, START)
    assert row.probe_at == START + dt.timedelta(seconds=30)

    # A new run's call is held on a timer at the probe time: no request, no attempt.
    held = start(flow, eager_celery, "f-new")
    step = charge(held)
    assert (step.status, step.wait_reason, step.wait_target, step.attempt) == (
        "waiting", "circuit", target, 1,
    )  # fmt: skip
    assert step.due_at >= row.probe_at and not step.errors
    assert report(payments)["requests"] == 3
    page = login(client, olga).get(f"/runs/{held.pk}/").content.decode()
    assert f"held: the breaker of <code>{target}</code> is open" in page
    breakers_page = client.get("/breakers/").content.decode()
    assert '1 <span class="muted">on the breaker</span>' in breakers_page

    # The failed runs' retries come due while it is open: held, attempt 2 unspent.
    sweep_at(START + dt.timedelta(seconds=2))
    for run in failed:
        step = charge(run)
        assert (step.status, step.wait_reason, step.attempt, len(step.errors)) == (
            "waiting", "circuit", 2, 1,
        )  # fmt: skip
    assert report(payments)["requests"] == 3
    assert breaker_events(target) == ["breaker.opened"]

    # Held steps and their timers are projections like any other.
    def snapshot():
        steps = list(Step.objects.order_by("run_id", "position").values())
        timers = list(Timer.objects.order_by("run_id", "node_id").values())
        for row in steps + timers:
            row.pop("id")
        return steps, timers

    before = snapshot()
    assert {t["kind"] for t in before[1]} == {"circuit"}
    Timer.objects.all().delete()
    Step.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert snapshot() == before


def test_a_half_open_probe_closes_it_and_the_backlog_is_released_gradually(
    olga, payments, eager_celery, store, sweep_at
):
    failed, flow = open_the_breaker(olga, payments, eager_celery)
    waiting = failed + [start(flow, eager_celery, f"w-{n}") for n in range(7)]
    target = target_of(payments)
    # Their release times are spread 1/5 s apart from the probe time on.
    sweep_at(START + dt.timedelta(seconds=2))  # the retries join the queue
    dues = sorted(charge(run).due_at for run in waiting)
    probe_at = START + dt.timedelta(seconds=30)
    assert dues[0] >= probe_at
    gaps = [(b - a).total_seconds() for a, b in zip(dues, dues[1:], strict=False)]
    assert min(gaps) >= 0.2 - 1e-6, gaps

    # At the probe time one call goes through; it succeeds and closes it.
    sweep_at(probe_at)
    assert breaker_events(target) == ["breaker.opened", "breaker.half_opened", "breaker.closed"]
    assert Breaker.objects.get(target=target).state == "closed"
    assert report(payments)["requests"] == 3 + 1

    # Then at most 5 a second, not all at once.
    released = []
    for tenth in range(1, 40):
        sweep_at(probe_at + dt.timedelta(seconds=tenth / 10))
        released.append(sum(charge(run).status == "succeeded" for run in waiting))
    per_second = [b - a for a, b in zip([1, *released[9::10]], released[9::10], strict=False)]
    assert released[-1] == len(waiting)
    assert max(per_second) <= 5, released
    assert report(payments)["charges"] == len(waiting)
    # Held steps spent no attempt: the opened-on failures are the only errors.
    assert sum(len(charge(run).errors) for run in waiting) == 3


def test_a_failed_probe_opens_it_again(olga, payments, eager_celery, store, sweep_at):
    failed, flow = open_the_breaker(olga, payments, eager_celery)
    target = target_of(payments)
    control(payments, fail_next=1, fail_status=503)
    sweep_at(START + dt.timedelta(seconds=30))
    assert breaker_events(target) == ["breaker.opened", "breaker.half_opened", "breaker.opened"]
    row = Breaker.objects.get(target=target)
    assert row.state == "open" and row.probe_at == START + dt.timedelta(seconds=60)


def test_a_non_retryable_answer_does_not_count_against_the_target(
    olga, payments, eager_celery, store
):
    flow = charge_flow(olga, payments)
    for n in range(4):
        with clock.frozen_at(START), eager_celery():
            driver.start_run(flow=flow, input={"order_id": f"bad-{n}", "amount": -1}, actor="u")
    assert breaker_events(target_of(payments)) == []


def _in_threads(count: int, work) -> list:
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_each_state_change_is_one_event_when_many_threads_race(store):
    target = "race.example:443"
    kwargs = {"node_type": "http.request", "now": START}
    changes = _in_threads(20, lambda: breakers.record_call(target, ok=False, **kwargs))
    assert changes.count("open") == 1 and changes.count(None) == 19
    later = START + dt.timedelta(seconds=31)
    verdicts = _in_threads(20, lambda: breakers.admit(target, now=later, probe_seconds=60))
    assert [v.verdict for v in verdicts].count("probe") == 1
    with_events = [v.event for v in verdicts if v.event is not None]
    assert len(with_events) == 1
    breakers.publish(with_events, now=later)
    kwargs["now"] = later
    closes = _in_threads(20, lambda: breakers.record_call(target, ok=True, **kwargs))
    assert closes.count("closed") == 1
    assert breaker_events(target) == ["breaker.opened", "breaker.half_opened", "breaker.closed"]
    assert Breaker.objects.get(target=target).state == "closed"


@pytest.mark.django_db(transaction=True)
def test_runs_failing_at_once_in_many_workers_open_the_breaker_once(
    olga, payments, store, celery_in_thread
):
    flow = charge_flow(olga, payments)
    control(payments, fail_next=100, fail_status=503, latency_ms=[20, 20])
    target = target_of(payments)

    def start_one():
        return driver.start_run(flow=flow, input={"order_id": "many", "amount": 5}, actor="u").pk

    run_ids = _in_threads(12, start_one)
    assert breaker_events(target) == ["breaker.opened"]
    steps = Step.objects.filter(run_id__in=run_ids, node_id="charge")
    states = sorted((s.status, s.wait_reason, s.attempt) for s in steps)
    called = [s for s in states if s[0] == "retrying"]
    held = [s for s in states if s[0] == "waiting"]
    assert len(called) + len(held) == 12
    assert all(s == ("retrying", "retry", 2) for s in called)
    assert all(s == ("waiting", "circuit", 1) for s in held)  # held: no attempt spent
    assert report(payments)["requests"] == len(called) >= POLICY["failures"]


def test_with_redis_down_calls_proceed_as_if_closed_and_the_fault_shows(
    olga, adam, payments, eager_celery, settings, client
):
    settings.LEDGERFLOW_BREAKER_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.LEDGERFLOW_BREAKER_DEFAULTS = {**POLICY, "failures": 1}
    settings.LEDGERFLOW_RATE_LIMITS = {target_of(payments): {"per_second": 1, "burst": 1}}
    flow = charge_flow(olga, payments)
    control(payments, fail_next=1, fail_status=503)
    runs = [start(flow, eager_celery, f"down-{n}") for n in range(3)]
    # Nothing held: no breaker opened, no rate limit applied.
    assert all(charge(run).wait_reason in ("", "retry") for run in runs)
    assert report(payments)["requests"] == 3
    assert breaker_events(target_of(payments)) == []
    fault = StoreFault.objects.get(store="redis")
    assert fault.count >= 3  # each admission, rate take and count of a call
    with clock.frozen_at(START + dt.timedelta(minutes=1)):
        page = login(client, adam).get("/breakers/").content.decode()
    assert "Redis is unreachable" in page and f"{fault.count} calls" in page


def test_a_rate_limit_holds_excess_calls_on_short_timers(
    olga, payments, eager_celery, store, settings, sweep_at
):
    settings.LEDGERFLOW_RATE_LIMITS = {target_of(payments): {"per_second": 1, "burst": 2}}
    flow = charge_flow(olga, payments)
    runs = [start(flow, eager_celery, f"r-{n}") for n in range(4)]
    assert [charge(run).status for run in runs] == ["succeeded", "succeeded", "waiting", "waiting"]
    third, fourth = charge(runs[2]), charge(runs[3])
    assert (third.wait_reason, third.attempt, third.wait_target) == (
        "rate_limit", 1, target_of(payments),
    )  # fmt: skip
    assert third.due_at == START + dt.timedelta(seconds=1)
    assert fourth.due_at == START + dt.timedelta(seconds=2)
    assert report(payments)["requests"] == 2
    sweep_at(START + dt.timedelta(seconds=1))
    assert charge(runs[2]).status == "succeeded" and charge(runs[3]).status == "waiting"
    sweep_at(START + dt.timedelta(seconds=2))
    assert charge(runs[3]).status == "succeeded" and charge(runs[3]).attempt == 1
    assert report(payments)["requests"] == 4


def test_an_admin_resets_an_open_breaker_and_the_projection_rebuilds(
    olga, adam, payments, eager_celery, store, client
):
    open_the_breaker(olga, payments, eager_celery)
    target = target_of(payments)
    page = login(client, adam).get("/breakers/").content.decode()
    assert target in page and "open" in page
    response = client.post("/breakers/reset/", {"target": target})
    assert response.status_code == 302
    assert breaker_events(target) == ["breaker.opened", "breaker.reset"]
    reset = Event.objects.get(stream=f"breaker:{target}", type="breaker.reset")
    assert reset.actor == "user:adam"
    assert Breaker.objects.get(target=target).state == "closed"
    # Resetting a closed breaker says so and records nothing.
    client.post("/breakers/reset/", {"target": target})
    assert breaker_events(target) == ["breaker.opened", "breaker.reset"]

    before = list(Breaker.objects.order_by("target").values())
    Breaker.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert list(Breaker.objects.order_by("target").values()) == before


def test_the_flow_page_shows_the_breakers_its_nodes_call(
    olga, payments, eager_celery, store, client
):
    failed, flow = open_the_breaker(olga, payments, eager_celery)
    page = login(client, olga).get(f"/flows/{flow.slug}/").content.decode()
    assert target_of(payments) in page and "breaker-open" in page


EMBEDDED_SCRIPT = """
import datetime as dt
from connectors.outbound import breakers
start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
later = start + dt.timedelta(seconds=31)
print(breakers.store().name)
for _ in range(6):
    breakers.record_call("api.example:443", ok=False, node_type="http.request", now=start)
print(breakers.admit("api.example:443", now=start, probe_seconds=60).verdict)
probe = breakers.admit("api.example:443", now=later, probe_seconds=60)
breakers.publish([probe.event], now=later)
print(probe.verdict)
print(breakers.record_call("api.example:443", ok=True, node_type="http.request", now=later))
"""


@pytest.mark.slow
def test_on_the_embedded_default_breakers_live_in_sqlite(tmp_path):
    from tests.processes import embedded_env, manage, sqlite_rows

    env = embedded_env(tmp_path, LEDGERFLOW_BREAKER_FAILURES="5")
    manage(env, "migrate", "--noinput")
    out = manage(env, "shell", "--no-imports", "-c", EMBEDDED_SCRIPT).split()
    assert out == ["database", "wait", "probe", "closed"]
    query = "SELECT type FROM runs_event WHERE stream = ? ORDER BY seq"
    events = sqlite_rows(tmp_path, query, ["breaker:api.example:443"])
    assert [e[0] for e in events] == ["breaker.opened", "breaker.half_opened", "breaker.closed"]
    rows = sqlite_rows(tmp_path, "SELECT state, failures FROM connectors_breaker")
    assert rows == [("closed", 5)]


def test_after_redis_loses_its_data_new_changes_still_reach_the_page(db, settings):
    import redis

    settings.LEDGERFLOW_BREAKER_DEFAULTS = POLICY
    target = "flaky.example:443"

    def fail_three(at):
        for _ in range(3):
            breakers.record_call(target, ok=False, node_type="http.request", now=at)

    fail_three(START)
    redis.Redis.from_url(settings.LEDGERFLOW_BREAKER_REDIS_URL).flushdb()
    later = START + dt.timedelta(minutes=5)
    fail_three(later)
    assert breaker_events(target) == ["breaker.opened", "breaker.opened"]
    row = Breaker.objects.get(target=target)
    assert (row.opened_at, row.probe_at) == (later, later + dt.timedelta(seconds=30))


def test_the_sweep_paces_held_steps_due_before_its_next_tick(
    olga, payments, eager_celery, store, settings
):
    import json

    import redis

    from config.celery import app

    failed, flow = open_the_breaker(olga, payments, eager_celery)
    held = [start(flow, eager_celery, f"p-{n}") for n in range(7)]
    probe_at = START + dt.timedelta(seconds=30)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("celery")
    settings.LEDGERFLOW_SWEEP_SECONDS = 2
    moment = probe_at - dt.timedelta(seconds=0.9)
    app.conf.task_always_eager = False  # the messages stay in the broker: no worker
    with clock.frozen_at(moment):
        assert sweeper.sweep(moment)["paced"] == 6  # due at +0, +0.2 … +1.0 s
    messages = [json.loads(raw) for raw in broker.lrange("celery", 0, -1)]
    broker.delete("celery")
    fires = [m["headers"] for m in messages if m["headers"]["task"] == "runs.tasks.fire_timer"]
    assert {h["argsrepr"] for h in fires} == {
        repr((run.pk, "charge", 1, "circuit")) for run in held[:6]
    }
    etas = sorted(dt.datetime.fromisoformat(h["eta"]) for h in fires)
    gaps = [(b - a).total_seconds() for a, b in zip(etas, etas[1:], strict=False)]
    assert all(0.15 < gap < 0.25 for gap in gaps), gaps
