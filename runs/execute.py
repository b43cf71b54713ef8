"""A side-effecting step: claimed in one transaction (``step.started``
commits before the effect), performed outside any transaction, and finished
in another, each a compare-and-set on (step, attempt); the finish also
claims the run's next ready step. A step whose target's breaker is open, or
whose rate limit has no token, is held at its claim instead
(``connectors/outbound/breakers.py``)."""

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass

from django.db import connection

from connectors import base as connectors
from connectors.outbound import breakers, ratelimits
from runs import decider, stepmetrics
from runs.follow_ups import is_disabled
from runs.graph_facts import connector_of
from runs.ground import clock
from runs.perform import Outcome, outcome_command, perform, recorded_input, render_config
from runs.session import Session, Work, run_session, setting, step_context

log = logging.getLogger(__name__)


@dataclass
class Claimed:
    connector: connectors.Connector
    ctx: connectors.Context
    lease_seconds: float
    work: Work
    target: str | None = None  # the breaker the call's outcome is counted on
    node_type: str = ""
    render_seconds: float = 0.0  # rendering its config, for /metrics


def claim(session: Session, node: str, attempt: int) -> "Claimed | None":
    """Claim a scheduled side-effecting step: ``step.started`` is part of
    this session's commit, which happens before the effect runs."""
    step = session.state.steps.get(node)
    if (
        session.state.status not in decider.RUN_LIVE
        or step is None
        or step.status != decider.SCHEDULED
        or step.attempt != attempt
    ):
        log.info("run %s step %s attempt %s: nothing to claim (duplicate message)",
                 session.run.pk, node, attempt)  # fmt: skip
        return None
    if is_disabled(session.graph, node):
        # The sweep re-sends a scheduled step by its connector, unaware
        # that the node is disabled (one left over when the inline
        # budget ran out): it still makes no call.
        session.pass_through(node, attempt)
        session.drive()
        return None
    connector = connector_of(session.graph, node)
    started = time.perf_counter()
    config, error = render_config(session.graph, node, session.state)
    render_seconds = time.perf_counter() - started
    lease = connector.lease_seconds(config) if not error else 30.0
    target = None if error else connector.breaker_target(config)
    if target and _held(session, node, attempt, target, lease):
        return None
    session.apply(
        decider.Claim(
            node=node,
            attempt=attempt,
            input=recorded_input(connector, config),
            lease_until=session.now + dt.timedelta(seconds=lease),
        )
    )
    if error:
        session.apply(session.fail(node, attempt, error, retryable=False, may_have_been_sent=False))
        session.count_attempt(node, render_seconds, stepmetrics.FAILED)
        return None
    ctx = step_context(session, node, attempt, config)
    return Claimed(connector=connector, ctx=ctx, lease_seconds=lease,
                   work=Work(session.run.pk, node, attempt), target=target,
                   node_type=session.graph.nodes[node]["type"],
                   render_seconds=render_seconds)  # fmt: skip


def _held(session: Session, node: str, attempt: int, target: str, lease: float) -> bool:
    """Hold the step back, attempt unspent, while its target's breaker is
    open or its rate limit has no token. Asked inside this transaction, so
    the event of a breaker change it caused commits with this claim."""
    admission = breakers.admit(target, now=session.now, probe_seconds=lease)
    if admission.event is not None:
        breakers.publish([admission.event], now=session.now)
    due, reason = None, decider.HOLD_CIRCUIT
    if admission.verdict == breakers.WAIT:
        due = admission.due or session.now
    elif admission.verdict == breakers.ALLOW:
        # A probe skips the bucket: the breaker's one test call must go.
        due, reason = ratelimits.take(target, now=session.now), decider.HOLD_RATE_LIMIT
    if due is None:
        return False
    session.apply(
        decider.Hold(node=node, attempt=attempt, reason=reason, due_at=due, target=target)
    )
    return True


def claim_step(run_id: int, node: str, attempt: int) -> Claimed | None:
    # The claim drives on itself where it needs to (a disabled step).
    with run_session(run_id, drive=False) as session:
        claimed = claim(session, node, attempt)
    return claimed


class _Heartbeat:
    """Extends a long call's lease every third of it, in its own transactions."""

    def __init__(self, run_id: int, node: str, attempt: int, lease_seconds: float):
        self.args = (run_id, node, attempt, lease_seconds)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def _loop(self) -> None:
        run_id, node, attempt, lease = self.args
        try:
            while not self.stop.wait(lease / 3):
                try:
                    # A longer lease makes no step ready.
                    with run_session(run_id, drive=False) as session:
                        session.apply(
                            decider.ExtendLease(
                                node=node, attempt=attempt,
                                lease_until=session.now + dt.timedelta(seconds=lease),
                            )
                        )  # fmt: skip
                except decider.StaleCommand:
                    return
        finally:
            connection.close()  # this thread's own connection


def finish_step(
    run_id: int, node: str, attempt: int, outcome: Outcome, eager: bool
) -> Claimed | None:
    """Record a step's outcome (compare-and-set on the attempt), drive the run,
    and with ``eager`` claim its next ready step in the same commit, so a
    sequential run pays one transaction per step and no broker hop."""
    # It drives before claiming the next step, so it drives itself.
    with run_session(run_id, drive=False) as session:
        try:
            session.apply(outcome_command(outcome, node, attempt, session.now))
        except decider.StaleCommand as exc:
            # A newer attempt owns the step (this one's lease expired): the
            # late result must change nothing.
            log.warning("run %s: late result of step %s attempt %s discarded: %s",
                        run_id, node, attempt, exc)  # fmt: skip
            session.abandon()
            return None
        session.record_facts(outcome)
        session.drive()
        following = None
        if eager:
            ready = session.newly_scheduled()
            if ready:
                following = claim(session, ready[0].node, ready[0].attempt)
    return following


def execute_step(run_id: int, node: str, attempt: int) -> None:
    """Claim, perform and complete a side-effecting step; then, within a time
    budget, continue this run's next ready step here (eager continuation)."""
    deadline = time.monotonic() + setting("LEDGERFLOW_EAGER_SECONDS", 2.0)
    claimed = claim_step(run_id, node, attempt)
    while claimed is not None:
        work = claimed.work
        started = time.perf_counter()
        with (
            _Heartbeat(work.run_id, work.node, work.attempt, claimed.lease_seconds),
            stepmetrics.running(claimed.node_type),
        ):
            outcome = perform(claimed.connector, claimed.ctx)
        # Its step.started is committed: the attempt happened, whatever
        # becomes of its result (a late one is discarded below).
        seconds = claimed.render_seconds + time.perf_counter() - started
        stepmetrics.observe(claimed.node_type, seconds, stepmetrics.outcome_of(outcome))
        if claimed.target:
            _count_on_breaker(claimed.target, claimed.node_type, outcome, work.run_id)
        eager = time.monotonic() < deadline
        claimed = finish_step(work.run_id, work.node, work.attempt, outcome, eager)


def _count_on_breaker(target: str, node_type: str, outcome: Outcome, run_id: int) -> None:
    """Only failures that say the target is unwell count against it (time-
    outs, refused connections, 5xx, 429); a 4xx answer is a healthy remote
    refusing a bad request."""
    failed = outcome.result is None and outcome.retryable
    try:
        breakers.record_call(
            target, ok=not failed, node_type=node_type, now=clock.now(), run_id=run_id
        )
    except Exception:  # the outcome must still be recorded on the run
        log.exception("could not count a call on the breaker of %s", target)


# --- timers, leases, people -------------------------------------------------------
