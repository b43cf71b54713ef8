"""A step that is not safe to repeat is never retried once its request may
have reached the remote: a read time-out after sending, a connection lost
mid-answer or a 500/502/504 leaves an outcome-unknown dead letter, as a
crash mid-call does. Failures proven to have sent nothing (a refused
connection, the outbound guard, a config error) are retried as before.

Real local servers throughout: the fake payments API (in the mode where it
ignores Idempotency-Key, so a repeat is a second charge), and small raw
socket servers for the cases it cannot play."""

import datetime as dt
import socket
import threading

import httpx
import pytest

from connectors import base as connectors
from fakeapi.payments import PaymentsServer
from runs import decider, driver
from runs.graph_facts import build_graph
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run, Step
from tests.conftest import allow_outbound
from tests.connector_helpers import run_connector
from tests.engine_helpers import chain, publish
from tests.localserver import free_port

START = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
TIMEOUT = 0.5


def charge_flow(olga, url: str, *, honours_key: bool):
    graph = chain(
        {
            "id": "charge",
            "type": "http.request",
            "config": {
                "method": "POST",
                "url": f"{url}/charges",
                "json_body": {"order_id": "{{ trigger.order_id }}", "amount": 10},
                "honours_idempotency_key": honours_key,
                "timeout_seconds": TIMEOUT,
            },
            "retry": {"max_attempts": 3, "initial_seconds": 10, "jitter": 0},
        }
    )
    return publish(olga, graph, slug="unsafe-charges")


def control(server: PaymentsServer, **settings) -> None:
    httpx.post(f"{server.url}/control", json=settings).raise_for_status()


def charges(server: PaymentsServer, order: str) -> int:
    orders = httpx.get(f"{server.url}/report").json()["orders"]
    return orders.get(order, {}).get("charges", 0)


@pytest.fixture
def sweep_later(sweep_at):
    """Sweep a minute on: any retry the step scheduled fires then."""
    return lambda seconds=60: sweep_at(START + dt.timedelta(seconds=seconds))


def start(flow, eager_celery, order: str) -> Run:
    with clock.frozen_at(START), eager_celery():
        return driver.start_run(flow=flow, input={"order_id": order}, actor="user:olga")


def charge_step(run: Run) -> Step:
    return Step.objects.get(run=run, node_id="charge")


def payloads(run: Run, kind: str) -> list[dict]:
    events = Event.objects.filter(stream=f"run:{run.pk}", type=kind).order_by("seq")
    return [event.payload for event in events]


def assert_outcome_unknown(run: Run) -> None:
    step = charge_step(run)
    assert step.status == "dead_lettered" and step.outcome_unknown, step.error
    assert step.attempt == 1
    (letter,) = payloads(run, "step.dead_lettered")
    assert letter["outcome_unknown"] is True and letter["reason"] == "outcome unknown"
    assert "may have reached the remote" in letter["error"]
    assert payloads(run, "step.attempt_failed")[0]["may_have_been_sent"] is True
    assert payloads(run, "step.retry_scheduled") == []


# --- the engine, end to end -----------------------------------------------------


def test_a_charge_answered_too_late_is_outcome_unknown_with_exactly_one_effect(
    olga, payments, eager_celery, sweep_later
):
    control(payments, honour_keys=False, late_next=1, late_seconds=TIMEOUT * 4)
    flow = charge_flow(olga, payments.url, honours_key=False)
    run = start(flow, eager_celery, "o-late")
    sweep_later()  # a retry, had one been scheduled, would fire here
    assert_outcome_unknown(run)
    assert "timed out" in charge_step(run).error
    assert charges(payments, "o-late") == 1


def test_a_refused_connection_is_retried_and_succeeds_when_the_server_comes_up(
    olga, settings, eager_celery, sweep_later
):
    port = free_port()  # nothing listens here yet: the connection is refused
    url = f"http://127.0.0.1:{port}"
    allow_outbound(settings, url)
    flow = charge_flow(olga, url, honours_key=False)
    run = start(flow, eager_celery, "o-refused")
    step = charge_step(run)
    assert step.status == "retrying" and step.attempt == 2, step.error
    assert payloads(run, "step.attempt_failed")[0]["may_have_been_sent"] is False
    with PaymentsServer(port) as server:
        control(server, honour_keys=False)
        sweep_later()
        run.refresh_from_db()
        assert run.status == "succeeded"
        assert charges(server, "o-refused") == 1


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_5xx_that_may_follow_the_effect_is_outcome_unknown(
    olga, payments, eager_celery, sweep_later, status
):
    control(payments, honour_keys=False, fail_next=1, fail_status=status)
    flow = charge_flow(olga, payments.url, honours_key=False)
    run = start(flow, eager_celery, "o-5xx")
    sweep_later()
    assert_outcome_unknown(run)
    assert charges(payments, "o-5xx") == 0  # nothing repeated, nothing invented


@pytest.mark.parametrize("status", [503, 429])
def test_a_503_or_429_says_nothing_was_processed_and_is_retried(
    olga, payments, eager_celery, sweep_later, status
):
    control(payments, honour_keys=False, fail_next=1, fail_status=status)
    flow = charge_flow(olga, payments.url, honours_key=False)
    run = start(flow, eager_celery, "o-busy")
    assert charge_step(run).status == "retrying"
    sweep_later()
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert charges(payments, "o-busy") == 1


def test_the_same_step_declared_safe_is_retried_and_the_remote_deduplicates(
    olga, payments, eager_celery, sweep_later
):
    control(payments, late_next=1, late_seconds=TIMEOUT * 4)  # honours keys
    flow = charge_flow(olga, payments.url, honours_key=True)
    run = start(flow, eager_celery, "o-safe")
    step = charge_step(run)
    assert step.status == "retrying" and not step.outcome_unknown
    sweep_later()
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert charges(payments, "o-safe") == 1  # the retry was recognised by its key


def test_a_502_on_a_safe_step_is_retried(olga, payments, eager_celery, sweep_later):
    control(payments, fail_next=1, fail_status=502)
    flow = charge_flow(olga, payments.url, honours_key=True)
    run = start(flow, eager_celery, "o-safe-502")
    assert charge_step(run).status == "retrying"
    sweep_later()
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_the_drill_switch_retries_an_unsafe_step_and_repeats_its_effect(
    olga, payments, eager_celery, sweep_later, settings
):
    """LEDGERFLOW_DRILL_RERUN_UNSAFE_STEPS exists so drills can prove they
    see a repeated effect; this is what it does."""
    settings.LEDGERFLOW_DRILL_RERUN_UNSAFE_STEPS = True
    control(payments, honour_keys=False, late_next=1, late_seconds=TIMEOUT * 4)
    flow = charge_flow(olga, payments.url, honours_key=False)
    run = start(flow, eager_celery, "o-drill")
    sweep_later()
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert charges(payments, "o-drill") == 2


def test_a_loop_over_an_unsafe_call_keeps_what_finished_and_repeats_no_item(
    olga, payments, eager_celery, sweep_later
):
    """One item answered late: the loop step is an outcome-unknown dead
    letter; the items that finished stay recorded, none is charged twice."""
    control(payments, honour_keys=False, late_next=1, late_seconds=TIMEOUT * 4)
    loop = {
        "id": "charge_each", "type": "loop",
        "config": {"items": "{{ trigger.orders }}", "batch_size": 1, "body": {
            "type": "http.request",
            "config": {"method": "POST", "url": f"{payments.url}/charges",
                       "json_body": {"order_id": "{{ item }}", "amount": 10},
                       "timeout_seconds": TIMEOUT}}},
        "retry": {"max_attempts": 3, "initial_seconds": 10, "jitter": 0},
    }  # fmt: skip
    flow = publish(olga, chain(loop), slug="unsafe-loop")
    with clock.frozen_at(START), eager_celery():
        run = driver.start_run(flow=flow, input={"orders": ["a", "b", "c"]}, actor="u")
    sweep_later()
    step = Step.objects.get(run=run, node_id="charge_each")
    assert step.status == "dead_lettered" and step.outcome_unknown, step.error
    assert "item 0" in step.error
    assert [charges(payments, order) for order in "abc"] == [1, 0, 0]


# --- the connectors' word: may it have been sent? ------------------------------------


def _raised(key: str, config: dict) -> connectors.ConnectorError:
    with pytest.raises(connectors.ConnectorError) as info:
        run_connector(key, config)
    return info.value


def test_http_proves_unsent_only_when_no_connection_was_made(db, settings, local_server):
    port = free_port()
    allow_outbound(settings, f"127.0.0.1:{port}")
    post = {"method": "POST", "timeout_seconds": TIMEOUT}
    refused = _raised("http.request", {**post, "url": f"http://127.0.0.1:{port}/x"})
    assert refused.retryable and not refused.may_have_been_sent
    guarded = _raised("http.request", {**post, "url": "http://127.0.0.1:9/x"})  # not allowed
    assert not guarded.retryable and not guarded.may_have_been_sent
    with _silent_server() as silent:  # reads the request, never answers
        allow_outbound(settings, f"127.0.0.1:{silent}")
        timed_out = _raised("http.request", {**post, "url": f"http://127.0.0.1:{silent}/x"})
    assert timed_out.retryable and timed_out.may_have_been_sent
    with _silent_server(hang_up=True) as dropped:  # reads it, then hangs up
        allow_outbound(settings, f"127.0.0.1:{dropped}")
        lost = _raised("http.request", {**post, "url": f"http://127.0.0.1:{dropped}/x"})
    assert lost.retryable and lost.may_have_been_sent


class _silent_server:
    """Accepts one connection, reads the request, then stays silent (or
    hangs up): the client cannot know whether the remote acted."""

    def __init__(self, hang_up: bool = False):
        self.hang_up = hang_up
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            if not self.hang_up:
                self.stop.wait(10)

    def __enter__(self) -> int:
        self.thread.start()
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def _smtp_server(drop_in_data: bool):
    """A minimal SMTP server: answers the dialogue, and with ``drop_in_data``
    hangs up once it has the message, before its 250."""
    sock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            stream = conn.makefile("rb")
            conn.sendall(b"220 test ESMTP\r\n")
            while line := stream.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250 test\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go on\r\n")
                    while stream.readline() not in (b".\r\n", b""):
                        pass
                    if drop_in_data:
                        return  # the message is in; the answer never comes
                    conn.sendall(b"250 queued\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return sock


def _mail_config(db_settings, port: int) -> dict:
    from connectors.credentials import store as credentials

    allow_outbound(db_settings, f"127.0.0.1:{port}")
    credentials.credential_create(
        actor="system:test", name=f"relay-{port}", type="smtp",
        fields={"host": "127.0.0.1", "port": port, "username": "", "starttls": False,
                "from_address": "ops@ledgerflow.test"},
        secrets={"password": ""}, allowed_hosts=[f"127.0.0.1:{port}"],
    )  # fmt: skip
    return {"credential": f"relay-{port}", "to": "a@example.com", "subject": "s", "body": "b",
            "timeout_seconds": 2}  # fmt: skip


def test_smtp_is_unsent_until_the_message_is_handed_over(db, settings):
    refused = _raised("email.send", _mail_config(settings, free_port()))
    assert refused.retryable and not refused.may_have_been_sent
    server = _smtp_server(drop_in_data=True)
    try:
        dropped = _raised("email.send", _mail_config(settings, server.getsockname()[1]))
    finally:
        server.close()
    assert dropped.retryable and dropped.may_have_been_sent
    server = _smtp_server(drop_in_data=False)
    try:
        sent = run_connector("email.send", _mail_config(settings, server.getsockname()[1]))
    finally:
        server.close()
    assert sent.output["to"] == ["a@example.com"]


def test_config_errors_before_any_io_are_unsent(db, settings):
    from connectors.credentials import store as credentials

    missing = _raised("email.send", {"credential": "nope", "to": "a@example.com",
                                     "subject": "s", "body": "b"})  # fmt: skip
    assert not missing.retryable and not missing.may_have_been_sent
    port = free_port()
    allow_outbound(settings, f"127.0.0.1:{port}")
    credentials.credential_create(
        actor="system:test", name="elsewhere", type="bearer", fields={},
        secrets={"token": "t0ken-elsewhere"}, allowed_hosts=["api.example.com:443"],
    )  # fmt: skip
    wrong_host = _raised("http.request", {"method": "POST", "credential": "elsewhere",
                                          "url": f"http://127.0.0.1:{port}/x"})  # fmt: skip
    assert not wrong_host.retryable and not wrong_host.may_have_been_sent


# --- the decision itself ------------------------------------------------------------


def _running_graph():
    graph = build_graph(
        {
            "nodes": [
                {"id": "start", "type": "trigger.manual", "retry": _POLICY},
                {
                    "id": "call",
                    "type": "http.request",
                    "retry": _POLICY,
                    "config": {"method": "POST", "url": "https://x.test/"},
                },  # fmt: skip
            ],
            "edges": [{"from": "start", "from_port": "out", "to": "call"}],
        }
    )
    state = decider.RunState(run_id=1)
    for command in (
        decider.Start(input={}, root_run_id=1, flow_id=1, version=1),
        decider.Advance(),
    ):
        for event in decider.decide(state, command, graph):
            state = decider.evolve(state, event)
    if state.steps["start"].status != decider.SUCCEEDED:
        for command in (decider.Claim("start", 1, {}, START), decider.Complete("start", 1, {})):
            for event in decider.decide(state, command, graph):
                state = decider.evolve(state, event)
        for event in decider.decide(state, decider.Advance(), graph):
            state = decider.evolve(state, event)
    for event in decider.decide(state, decider.Claim("call", 1, {}, START), graph):
        state = decider.evolve(state, event)
    return graph, state


_POLICY = {"max_attempts": 3, "initial_seconds": 1, "multiplier": 2, "max_seconds": 60,
           "jitter": 0}  # fmt: skip


@pytest.mark.parametrize(
    ("safe", "sent", "expected"),
    [
        (False, True, "step.dead_lettered"),  # unsafe, may have acted: a person checks
        (False, False, "step.retry_scheduled"),  # unsafe, proven unsent: retry
        (True, True, "step.retry_scheduled"),  # safe: the remote deduplicates
        (True, False, "step.retry_scheduled"),
    ],
)
def test_the_decider_retries_only_what_cannot_repeat_an_effect(safe, sent, expected):
    graph, state = _running_graph()
    fail = decider.Fail("call", 1, "timed out", retryable=True, now=START,
                        safe_to_rerun=safe, may_have_been_sent=sent)  # fmt: skip
    events = decider.decide(state, fail, graph)
    assert [kind for kind, _ in events] == ["step.attempt_failed", expected]
    if expected == "step.dead_lettered":
        assert events[1][1]["outcome_unknown"] is True
        assert events[1][1]["reason"] == "outcome unknown"
