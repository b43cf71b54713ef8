"""A session: one locked transaction on one run, the only way a run changes.

It locks the run (the head row of its stream ``run:<id>``), loads the state
from its projection rows (or keeps it from this process's previous commit
on the run), decides, appends the events and writes the evolved rows
(``runs/rows.py``) in one transaction, and sends the follow-up work
(``runs/follow_ups.py``) once that commits. Pure steps run inline in that
transaction, within a budget. ``run_session()`` is how every entry point
(``runs/services.py``, ``runs/execute.py``) opens one.
"""

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from flows.models import DraftSnapshot, FlowVersion
from runs import decider, follow_ups, live, rows, stepmetrics, wakeups
from runs.decider import Graph, RunState, StepState
from runs.follow_ups import is_disabled, runs_inline
from runs.graph_facts import build_graph, connector_of
from runs.ground import clock, projectors
from runs.ground.eventstore import GENESIS_HASH, NewEvent, append_many
from runs.ground.models import Stream
from runs.models import Run
from runs.perform import (
    Outcome,
    context_of,
    outcome_command,
    passed_through,
    perform,
    recorded_input,
    render_config,
)

log = logging.getLogger(__name__)


def setting(name: str, default):
    return getattr(settings, name, default)


# --- loading and saving a run ----------------------------------------------


def _load_state(run: Run, step_rows=None) -> RunState:
    steps = {}
    for row in run.steps.all() if step_rows is None else step_rows:
        steps[row.node_id] = StepState(
            node=row.node_id,
            **{name: getattr(row, name) for name in rows.STEP_FIELDS if name != "port"},
            port=row.port or None,
        )
    return RunState(
        run_id=run.pk,
        steps=steps,
        started_at=run.created_at,
        business_key=run.business_key,
        **{name: getattr(run, name) for name in rows.RUN_FIELDS},
    )


def load_state(run: Run) -> RunState:
    """The run's state as its rows hold it (for reads that ask the decider
    what a command would do, such as a migration's check)."""
    return _load_state(run)


_graph_cache: dict[tuple[int, int | str], Graph] = {}


def graph_for(run: Run) -> Graph:
    if run.test_snapshot:
        return snapshot_graph(run.flow_id, run.test_snapshot)
    return graph_of(run.flow_id, run.version_number)


def graph_of(flow_id: int, number: int) -> Graph:
    """A published version's graph."""
    return _cached_graph(
        (flow_id, number), lambda: FlowVersion.objects.get(flow_id=flow_id, number=number).graph
    )


def snapshot_graph(flow_id: int, graph_hash: str) -> Graph:
    """A test run's graph: the draft snapshot it pinned."""
    return _cached_graph(
        (flow_id, graph_hash),
        lambda: DraftSnapshot.objects.get(flow_id=flow_id, graph_hash=graph_hash).graph,
    )


def _cached_graph(key: tuple[int, int | str], load: Callable[[], dict]) -> Graph:
    """Versions and snapshots are immutable, so a worker keeps each graph it
    has loaded: the key names one for ever."""
    if key not in _graph_cache:
        _graph_cache[key] = build_graph(load())
    return _graph_cache[key]


_state_cache: dict[int, tuple[tuple[int, str], Run, RunState]] = {}
STATE_CACHE_SIZE = 2000


def _remember(run_id: int, head: tuple[int, str], run: Run, state: RunState) -> None:
    if len(_state_cache) >= STATE_CACHE_SIZE:
        _state_cache.pop(next(iter(_state_cache)))
    if state.status in decider.RUN_TERMINAL:
        _state_cache.pop(run_id, None)
    else:
        _state_cache[run_id] = (head, run, state)


@dataclass
class Work:
    """Side-effecting steps scheduled by a session, to be dispatched."""

    run_id: int
    node: str
    attempt: int


# Who the engine's own decisions are recorded as.
ENGINE = "system:engine"


class Session:
    """One locked transaction on one run. Use inside ``transaction.atomic``.

    ``actor`` is who asked for the change (a person, a trigger, the sweep):
    the event that records their command carries them. What the engine
    decides as a consequence (steps scheduled and run inline, the run
    finishing or failing, a dead letter's step scheduled again) carries
    ``ENGINE``: a person starts or cancels a run, the engine runs its steps."""

    def __init__(self, run_id: int, *, actor: str = ENGINE, now=None, new_run: Run | None = None):
        self.head: tuple[int, str] | None
        if new_run is not None:
            # A run inserted by this very transaction: no other transaction
            # can see it, so there is no head to lock and no row to load; its
            # stream starts at the genesis head (the append inserts it).
            self.head = (0, GENESIS_HASH)
            self.run, self.state = new_run, _load_state(new_run, step_rows=())
        else:
            # The run's stream head is the run's lock: every change to a run
            # is an append to its stream, so holding the head serialises the
            # deciders.
            head = Stream.objects.select_for_update().filter(name=f"run:{run_id}").first()
            self.head = (head.last_seq, head.last_hash) if head else None
            cached = _state_cache.get(run_id)
            if cached is not None and self.head is not None and cached[0] == self.head:
                _, self.run, self.state = cached
            else:
                self.run = Run.objects.get(pk=run_id)
                self.state = _load_state(self.run)
        self.graph = graph_for(self.run)
        self.before = self.state
        self.actor = actor
        self.now = now or clock.now()
        # Events to append: (type, payload, actor).
        self.events: list[tuple[str, dict, str]] = []
        self.needs_continuation = False
        self.abandoned = False

    def abandon(self) -> None:
        """Nothing to change after all: ``run_session`` will not commit."""
        self.abandoned = True

    def apply(self, command, *, engine: bool = False) -> list[tuple[str, dict]]:
        """Decide ``command`` and evolve the state. The command is the
        caller's (``engine`` false): the first event the decider returns is
        the command's own record and carries the session's actor; any
        further ones (a queued start, a replayed step scheduled again, the
        run failing after a discard) are the engine's consequences. The
        engine's own commands (``engine`` true) carry ``ENGINE`` whole."""
        events = decider.decide(self.state, command, self.graph)
        for event in events:
            self.state = decider.evolve(self.state, event, at=self.now)
        for index, (kind, payload) in enumerate(events):
            by = self.actor if index == 0 and not engine else ENGINE
            self.events.append((kind, payload, by))
        return events

    def record(self, events, *, first: bool = False) -> None:
        """Append the caller's own facts (a trigger's delivery, an approval's
        decision), in the caller's name; ``first`` puts them before the
        events already decided in this session."""
        mine = [(kind, payload, self.actor) for kind, payload in events or []]
        if first:
            self.events[:0] = mine
        else:
            self.events.extend(mine)

    # Pure steps, inline --------------------------------------------------
    def drive(self) -> None:
        """Advance, running pure steps inline until none is ready or the
        budget is spent; then a continuation task carries on."""
        limit = setting("LEDGERFLOW_INLINE_STEP_BUDGET", 50)
        seconds = setting("LEDGERFLOW_INLINE_TIME_BUDGET", 0.1)
        started = time.monotonic()
        done = 0
        while True:
            self.apply(decider.Advance(), engine=True)
            ready = [
                s
                for s in self.state.steps.values()
                if s.status == decider.SCHEDULED and runs_inline(self.graph, s.node)
            ]
            if not ready:
                return
            for step in ready:
                if done >= limit or time.monotonic() - started > seconds:
                    self.needs_continuation = True
                    return
                self._run_inline(step.node, step.attempt)
                done += 1

    def _run_inline(self, node: str, attempt: int) -> None:
        if is_disabled(self.graph, node):
            self.pass_through(node, attempt)
            return
        connector = connector_of(self.graph, node)
        started = time.perf_counter()
        config, error = render_config(self.graph, node, self.state)
        self.apply(
            decider.Claim(
                node=node, attempt=attempt, input=recorded_input(connector, config),
                lease_until=self.now,
            ),
            engine=True,
        )  # fmt: skip
        if error:
            failed = self.fail(node, attempt, error, retryable=False, may_have_been_sent=False)
            self.apply(failed, engine=True)
            self.count_attempt(node, time.perf_counter() - started, stepmetrics.FAILED)
            return
        ctx = step_context(self, node, attempt, config)
        with stepmetrics.running(self.graph.nodes[node]["type"]):
            outcome = perform(connector, ctx)
        self.apply(outcome_command(outcome, node, attempt, self.now), engine=True)
        self.record_facts(outcome)
        self.count_attempt(node, time.perf_counter() - started, stepmetrics.outcome_of(outcome))

    def pass_through(self, node: str, attempt: int) -> None:
        """A disabled node calls nothing: it succeeds at once with what flowed
        into it, out of its first port, and its event says it was disabled."""
        data = passed_through(self.graph, node, self.state)
        claim = decider.Claim(node=node, attempt=attempt, input=data, lease_until=self.now)
        self.apply(claim, engine=True)
        port = self.graph.ports(node)[0]
        self.apply(
            decider.Complete(node=node, attempt=attempt, output=data, port=port, disabled=True),
            engine=True,
        )
        self.count_attempt(node, 0.0, stepmetrics.SUCCEEDED)

    def count_attempt(self, node: str, seconds: float, outcome: str) -> None:
        """Observe an attempt of ``node`` for /metrics once this session
        commits: a session rolled back ran the step but recorded no attempt
        (the step runs again), so the figures keep to the attempts the
        database holds."""
        connector = self.graph.nodes[node]["type"]
        transaction.on_commit(lambda: stepmetrics.observe(connector, seconds, outcome))

    def record_facts(self, outcome: Outcome) -> None:
        """The connector's own facts go after the step's outcome they explain."""
        if outcome.result is not None:
            self.events.extend((kind, payload, ENGINE) for kind, payload in outcome.result.events)

    def fail(self, node, attempt, error, retryable, may_have_been_sent) -> decider.Fail:
        return decider.Fail(
            node=node,
            attempt=attempt,
            error=error,
            retryable=retryable,
            now=self.now,
            jitter_sample=random.random(),
            may_have_been_sent=may_have_been_sent,
        )

    # Persisting ------------------------------------------------------------
    def newly_scheduled(self) -> list[Work]:
        """Side-effecting steps this session scheduled (they need a worker)."""
        ready = follow_ups.newly_scheduled(self.before, self.state, self.graph)
        return [Work(self.run.pk, step.node, step.attempt) for step in ready]

    def commit(self) -> None:
        """Append the events, write the rows, enqueue follow-ups on commit."""
        if not self.events:
            return
        stored = append_many(
            (
                NewEvent(stream=self.run.stream, type=kind, payload=payload, actor=actor)
                for kind, payload, actor in self.events
            ),
            at=self.now,
            # This session holds the head's lock (taken above); the append
            # checks it by compare-and-set instead of locking it again.
            known_heads={self.run.stream: self.head} if self.head else None,
        )
        self.head = (stored[-1].seq, stored[-1].hash)
        # The rows are the projection of what was stored (secrets redacted,
        # JSON normalised), exactly as a rebuild from the log would derive.
        state = self.before
        for event in stored:
            state = decider.evolve(state, (event.type, event.payload), at=event.occurred_at)
        self.state = state
        rows.write_steps(self.run.pk, self.graph, self.before, state)
        rows.write_run_fields(self.run, self.before, state)
        # Then the rows other apps keep from run events (approval tasks),
        # through the ground layer's registry, in this same transaction.
        projectors.project(stored)
        facts = follow_ups.RunFacts(self.run.flow_id, has_parent=bool(self.run.parent_run_id))
        sends = follow_ups.plan(
            self.before, state, self.graph, run=facts, now=self.now,
            continuation=self.needs_continuation,
        )  # fmt: skip
        run_id = self.run.pk
        transaction.on_commit(lambda: _send_all(sends))
        # The run's open pages refresh once this commits (best effort).
        live.announce_on_commit(run_id)
        # Remember the committed state: the next session on this run in this
        # process (eager continuation) skips reloading it. Keyed by the stream
        # head, so any other writer in between invalidates it.
        head, run, committed = self.head, self.run, self.state
        transaction.on_commit(lambda: _remember(run_id, head, run, committed))
        self.events = []
        self.before = self.state


@contextmanager
def run_session(
    run_id: int, *, actor: str = ENGINE, now=None, drive: bool = True,
    savepoint: bool = True, new_run: Run | None = None,
) -> Iterator[Session]:  # fmt: skip
    """One change to a run: lock it, let the caller apply commands, drive it
    on (unless ``drive`` is false: the caller drives, or the change cannot
    make a step ready), and commit, all in one transaction. An exception
    rolls everything back; ``session.abandon()`` commits nothing of the
    session's (the caller's own row writes still commit). ``savepoint`` false
    joins the caller's open transaction outright (one that holds a lock the
    session's change depends on). ``new_run`` is the run the caller has just
    inserted in its open transaction (the start of a run)."""
    with transaction.atomic(savepoint=savepoint):
        session = Session(run_id, actor=actor, now=now, new_run=new_run)
        yield session
        if session.abandoned:
            return
        if drive:
            session.drive()
        session.commit()


def _send_all(sends: list[follow_ups.Send]) -> None:
    for send in sends:
        try:
            wakeups.send(send.task, send.args, countdown=send.countdown or None)
        except Exception as exc:  # the broker is down: the change is committed
            log.warning(
                "could not send %s%s (%s); the recovery sweep will pick it up",
                send.task, send.args, exc,
            )  # fmt: skip


# --- rendering and performing ------------------------------------------------


def record_iterations(run_id: int, node: str, attempt: int, outputs: dict[int, Any]) -> None:
    """Record finished loop iterations in one commit, while the loop step
    runs: a crash after this commit does not repeat them. A superseded
    attempt raises ``StaleCommand`` and records nothing."""
    if not outputs:
        return
    # Iterations of a running step make no other step ready.
    with run_session(run_id, drive=False) as session:
        for index in sorted(outputs):
            session.apply(
                decider.CompleteIteration(
                    node=node, attempt=attempt, index=index, output=outputs[index]
                )
            )


def step_context(session: Session, node: str, attempt: int, config: Any):
    """The context a step's connector runs in; a loop records its finished
    iterations through it, each batch in a session of its own."""

    def record(outputs: dict[int, Any]) -> None:
        record_iterations(session.run.pk, node, attempt, outputs)

    return context_of(session.state, session.graph, node, attempt, config, session.now, record)
