"""The driver: the only code that changes a run, by running the decider.

Each entry point locks the run (the head row of its stream ``run:<id>``),
loads the state from its projection rows (or keeps it from this process's
previous commit on the run), decides, appends the events and writes the
evolved rows in one transaction, and enqueues follow-up work on commit. Pure
steps run inline in that transaction, within a budget. Side-effecting steps
are claimed in one transaction (``step.started`` commits before the effect),
run outside any transaction, and completed in another, each a compare-and-set
on (step, attempt); the completion also claims the run's next ready step.
A step whose target's breaker is open, or whose rate limit has no token, is
held at its claim instead (``connectors/outbound/breakers.py``). A run whose flow has
a concurrency key queues behind the unfinished runs of its key.
"""

import datetime as dt
import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from connectors import base as connectors
from connectors.outbound import breakers, ratelimits
from flows.models import FlowVersion
from runs import decider, expressions, follow_ups, rows, subflows, wakeups
from runs.decider import Graph, RunState, StepState
from runs.graph_facts import build_graph, connector_of
from runs.ground import clock, projectors
from runs.ground.eventstore import NewEvent, append_many
from runs.ground.models import Stream
from runs.models import Run, Step, Timer

log = logging.getLogger(__name__)
is_disabled, runs_inline = follow_ups.is_disabled, follow_ups.runs_inline


def _setting(name: str, default):
    return getattr(settings, name, default)


# --- loading and saving a run ----------------------------------------------


def _load_state(run: Run) -> RunState:
    steps = {}
    for row in run.steps.all():
        steps[row.node_id] = StepState(
            node=row.node_id,
            **{name: getattr(row, name) for name in rows.STEP_FIELDS if name != "port"},
            port=row.port or None,
        )
    return RunState(
        run_id=run.pk,
        status=run.status,
        input=run.input,
        output=run.output,
        error=run.error,
        root_run_id=run.root_run_id,
        lineage_id=run.lineage_id,
        steps=steps,
        started_at=run.created_at,
        finished_at=run.finished_at,
        updated_at=run.updated_at,
        concurrency_key=run.concurrency_key,
        wait_reason=run.wait_reason,
        business_key=run.business_key,
    )


_graph_cache: dict[tuple[int, int | str], Graph] = {}


def graph_for(run: Run) -> Graph:
    if run.test_snapshot:
        return snapshot_graph(run.flow_id, run.test_snapshot)
    return graph_of(run.flow_id, run.version_number)


def graph_of(flow_id: int, number: int) -> Graph:
    """Versions are immutable, so a worker keeps each graph it has loaded."""
    key = (flow_id, number)
    if key not in _graph_cache:
        version = FlowVersion.objects.get(flow_id=flow_id, number=number)
        _graph_cache[key] = build_graph(version.graph)
    return _graph_cache[key]


def snapshot_graph(flow_id: int, graph_hash: str) -> Graph:
    """A test run's graph: the draft snapshot it pinned, immutable too."""
    from flows.models import DraftSnapshot

    key = (flow_id, graph_hash)
    if key not in _graph_cache:
        snapshot = DraftSnapshot.objects.get(flow_id=flow_id, graph_hash=graph_hash)
        _graph_cache[key] = build_graph(snapshot.graph)
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


class Session:
    """One locked transaction on one run. Use inside ``transaction.atomic``."""

    def __init__(self, run_id: int, *, actor: str = "system:engine", now=None):
        # The run's stream head is the run's lock: every change to a run is an
        # append to its stream, so holding the head serialises the deciders.
        head = Stream.objects.select_for_update().filter(name=f"run:{run_id}").first()
        self.head: tuple[int, str] | None = (head.last_seq, head.last_hash) if head else None
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
        self.events: list[tuple[str, dict]] = []
        self.needs_continuation = False
        self.abandoned = False

    def abandon(self) -> None:
        """Nothing to change after all: ``run_session`` will not commit."""
        self.abandoned = True

    def apply(self, command) -> list[tuple[str, dict]]:
        events = decider.decide(self.state, command, self.graph)
        for event in events:
            self.state = decider.evolve(self.state, event, at=self.now)
        self.events.extend(events)
        return events

    # Pure steps, inline --------------------------------------------------
    def drive(self) -> None:
        """Advance, running pure steps inline until none is ready or the
        budget is spent; then a continuation task carries on."""
        limit = _setting("LEDGERFLOW_INLINE_STEP_BUDGET", 50)
        seconds = _setting("LEDGERFLOW_INLINE_TIME_BUDGET", 0.1)
        started = time.monotonic()
        done = 0
        while True:
            self.apply(decider.Advance())
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
            self._pass_through(node, attempt)
            return
        connector = connector_of(self.graph, node)
        config, error = render_config(self.graph, node, self.state)
        self.apply(
            decider.Claim(
                node=node, attempt=attempt, input=recorded_input(connector, config),
                lease_until=self.now,
            )
        )  # fmt: skip
        if error:
            self.apply(self._fail(node, attempt, error, retryable=False, may_have_been_sent=False))
            return
        ctx = _context(self.state, self.graph, node, attempt, config, self.now)
        outcome = perform(connector, ctx)
        self.apply(outcome_command(outcome, node, attempt, self.now))
        self.record_facts(outcome)

    def _pass_through(self, node: str, attempt: int) -> None:
        """A disabled node calls nothing: it succeeds at once with what flowed
        into it, out of its first port, and its event says it was disabled."""
        data = passed_through(self.graph, node, self.state)
        self.apply(decider.Claim(node=node, attempt=attempt, input=data, lease_until=self.now))
        port = self.graph.ports(node)[0]
        self.apply(
            decider.Complete(node=node, attempt=attempt, output=data, port=port, disabled=True)
        )

    def record_facts(self, outcome: "Outcome") -> None:
        """The connector's own facts go after the step's outcome they explain."""
        if outcome.result is not None:
            self.events.extend(outcome.result.events)

    def _fail(self, node, attempt, error, retryable, may_have_been_sent) -> decider.Fail:
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

    def claim(self, node: str, attempt: int) -> "Claimed | None":
        """Claim a scheduled side-effecting step: ``step.started`` is part of
        this session's commit, which happens before the effect runs."""
        step = self.state.steps.get(node)
        if (
            self.state.status not in decider.RUN_LIVE
            or step is None
            or step.status != decider.SCHEDULED
            or step.attempt != attempt
        ):
            log.info("run %s step %s attempt %s: nothing to claim (duplicate message)",
                     self.run.pk, node, attempt)  # fmt: skip
            return None
        if is_disabled(self.graph, node):
            # The sweep re-sends a scheduled step by its connector, unaware
            # that the node is disabled (one left over when the inline
            # budget ran out): it still makes no call.
            self._pass_through(node, attempt)
            self.drive()
            return None
        connector = connector_of(self.graph, node)
        config, error = render_config(self.graph, node, self.state)
        lease = connector.lease_seconds(config) if not error else 30.0
        target = None if error else connector.breaker_target(config)
        if target and self._held(node, attempt, target, lease):
            return None
        self.apply(
            decider.Claim(
                node=node,
                attempt=attempt,
                input=recorded_input(connector, config),
                lease_until=self.now + dt.timedelta(seconds=lease),
            )
        )
        if error:
            self.apply(self._fail(node, attempt, error, retryable=False, may_have_been_sent=False))
            return None
        ctx = _context(self.state, self.graph, node, attempt, config, self.now)
        return Claimed(connector=connector, ctx=ctx, lease_seconds=lease,
                       work=Work(self.run.pk, node, attempt), target=target,
                       node_type=self.graph.nodes[node]["type"])  # fmt: skip

    def _held(self, node: str, attempt: int, target: str, lease: float) -> bool:
        """Hold the step back, attempt unspent, while its target's breaker is
        open or its rate limit has no token. Asked inside this transaction, so
        the event of a breaker change it caused commits with this claim."""
        admission = breakers.admit(target, now=self.now, probe_seconds=lease)
        if admission.event is not None:
            breakers.publish([admission.event], now=self.now)
        due, reason = None, decider.HOLD_CIRCUIT
        if admission.verdict == breakers.WAIT:
            due = admission.due or self.now
        elif admission.verdict == breakers.ALLOW:
            # A probe skips the bucket: the breaker's one test call must go.
            due, reason = ratelimits.take(target, now=self.now), decider.HOLD_RATE_LIMIT
        if due is None:
            return False
        self.apply(
            decider.Hold(node=node, attempt=attempt, reason=reason, due_at=due, target=target)
        )
        return True

    def commit(self) -> None:
        """Append the events, write the rows, enqueue follow-ups on commit."""
        if not self.events:
            return
        stored = append_many(
            (
                NewEvent(stream=self.run.stream, type=kind, payload=payload, actor=self.actor)
                for kind, payload in self.events
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
        # Remember the committed state: the next session on this run in this
        # process (eager continuation) skips reloading it. Keyed by the stream
        # head, so any other writer in between invalidates it.
        head, run, committed = self.head, self.run, self.state
        transaction.on_commit(lambda: _remember(run_id, head, run, committed))
        self.events = []
        self.before = self.state


@contextmanager
def run_session(
    run_id: int, *, actor: str = "system:engine", now=None, drive: bool = True,
    savepoint: bool = True,
) -> Iterator[Session]:  # fmt: skip
    """One change to a run: lock it, let the caller apply commands, drive it
    on (unless ``drive`` is false: the caller drives, or the change cannot
    make a step ready), and commit, all in one transaction. An exception
    rolls everything back; ``session.abandon()`` commits nothing of the
    session's (the caller's own row writes still commit). ``savepoint`` false
    joins the caller's open transaction outright (one that holds a lock the
    session's change depends on)."""
    with transaction.atomic(savepoint=savepoint):
        session = Session(run_id, actor=actor, now=now)
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


def passed_through(graph: Graph, node: str, state: RunState) -> Any:
    """What flowed into a disabled node: its one predecessor's output
    (validation refuses a disabled node with more than one incoming edge,
    whose output would otherwise be a guess)."""
    edges = graph.incoming.get(node, [])
    return state.steps[edges[0]["from"]].output if edges else None


def _jsonable(config: Any) -> Any:
    if hasattr(config, "model_dump"):
        return config.model_dump(mode="json")
    return config


def recorded_input(connector: connectors.Connector, config: Any) -> Any:
    """The step's input as the log records it: the rendered config. It holds
    no secret: configs name credentials, whose secrets stay in the store."""
    return _jsonable(config)


def step_data(state: RunState) -> dict:
    return {
        "trigger": state.input,
        "steps": {
            node: {"output": s.output}
            for node, s in state.steps.items()
            if s.status
            in (decider.SUCCEEDED, decider.WAITING, decider.COMPENSATING, decider.COMPENSATED)
        },
        "run": {"id": state.run_id, "root_id": state.root_run_id},
    }


def render_config(graph: Graph, node: str, state: RunState) -> tuple[Any, str | None]:
    """The node's config with expressions rendered, validated; or an error."""
    raw = graph.nodes[node]["config"]
    step = state.steps[node]
    connector = connector_of(graph, node)
    if step.revision > 0 and step.input is not None:
        # An operator edited the input of a dead letter (its credential
        # fields checked unchanged when the edit was accepted).
        raw = step.input
    deferred = {}
    if isinstance(raw, dict):
        deferred = {k: v for k, v in raw.items() if k in connector.deferred_fields}
    try:
        rendered = expressions.render(
            {k: v for k, v in raw.items() if k not in deferred} if deferred else raw,
            step_data(state),
        )
    except expressions.ExpressionTimeout as exc:
        return raw, f"node '{node}' {exc}"  # names the field; never retried
    except expressions.ExpressionError as exc:
        return raw, f"config: {exc}"
    if deferred:
        rendered.update(deferred)
    try:
        return connector.Config.model_validate(rendered), None
    except ValueError as exc:
        return rendered, f"config after rendering: {exc}"


def _context(state: RunState, graph: Graph, node: str, attempt: int, config, now):
    step = state.steps[node]
    base, phase = decider.base_node(node)
    root = state.root_run_id or state.run_id
    key = step.idempotency_key or decider.idempotency_key(
        root_run_id=root, node=base, revision=step.revision, phase=phase
    )
    arrived = {
        edge["from"]: state.steps[edge["from"]].output
        for edge in graph.incoming.get(node, [])
        if decider._edge_state(state, edge) == "live"
    }

    def iteration_key(index: int) -> str:
        return decider.idempotency_key(
            root_run_id=root, node=base, iteration=index, revision=step.revision, phase=phase
        )

    def record(outputs: dict[int, Any]) -> None:
        record_iterations(state.run_id, node, attempt, outputs)

    return connectors.Context(
        run_id=state.run_id,
        node_id=node,
        attempt=attempt,
        config=config,
        idempotency_key=key,
        data=step_data(state),
        now=now,
        phase=phase,
        original_output=state.steps[base].output if phase == "undo" else None,
        arrived=arrived,
        iterations_done={int(index): out for index, out in step.iterations.items()},
        iteration_key=iteration_key,
        record_iterations=record,
    )


@dataclass
class Outcome:
    result: connectors.Result | None = None
    error: str = ""
    retryable: bool = False
    retry_after: float | None = None
    # A failure: may the request have reached the remote (the connector's
    # word; true unless it has proof), and may the step run again without
    # repeating its effect (its side-effect class)? Together they decide
    # between a retry and an outcome-unknown dead letter.
    may_have_been_sent: bool = True
    safe_to_rerun: bool = True


def safe_to_rerun(connector: connectors.Connector, config: Any) -> bool:
    """Whether the step's side-effect class lets it run again (none,
    idempotent, compensatable), for this config."""
    if settings.LEDGERFLOW_DRILL_RERUN_UNSAFE_STEPS:
        # Drills only: proves they see the effects this repeats.
        return True
    try:
        return connector.side_effect(config) in connectors.SAFE_TO_RERUN
    except Exception:  # a config the connector cannot judge: assume the worst
        log.exception("side-effect class of %s", connector.key)
        return False


def perform(connector: connectors.Connector, ctx: connectors.Context) -> Outcome:
    try:
        return Outcome(result=connector.execute(ctx))
    except connectors.ConnectorError as exc:
        return Outcome(error=str(exc), retryable=exc.retryable, retry_after=exc.retry_after,
                       may_have_been_sent=exc.may_have_been_sent,
                       safe_to_rerun=safe_to_rerun(connector, ctx.config))  # fmt: skip
    except decider.StaleCommand as exc:
        # A loop recording an iteration found its attempt superseded (its
        # lease expired); the completion will be discarded the same way.
        return Outcome(error=f"superseded: {exc}", retryable=False)
    except Exception as exc:  # a bug in a connector fails the step, visibly
        log.exception(
            "connector %s raised on run %s step %s", connector.key, ctx.run_id, ctx.node_id
        )
        return Outcome(error=f"{type(exc).__name__}: {exc}", retryable=False,
                       safe_to_rerun=safe_to_rerun(connector, ctx.config))  # fmt: skip


def outcome_command(outcome: Outcome, node: str, attempt: int, now):
    if outcome.result is None:
        return decider.Fail(
            node=node,
            attempt=attempt,
            error=outcome.error,
            retryable=outcome.retryable,
            retry_after=outcome.retry_after,
            now=now,
            jitter_sample=random.random(),
            safe_to_rerun=outcome.safe_to_rerun,
            may_have_been_sent=outcome.may_have_been_sent,
        )
    result = outcome.result
    if result.wait_until is not None or result.wait_for:
        return decider.Wait(
            node=node,
            attempt=attempt,
            due_at=result.wait_until,
            output=result.output,
            reason=result.wait_for or "timer",
            port=result.port,
        )
    return decider.Complete(node=node, attempt=attempt, output=result.output, port=result.port)


# --- entry points ---------------------------------------------------------------


class StartRefused(Exception):
    """The flow cannot start a run now; the message says why."""


def start_run(
    *, flow, input: Any, actor: str, version_number: int | None = None,
    replay_of: int | None = None, mode: str = "start", root_run_id: int | None = None,
    carried: dict | None = None, parent: dict | None = None,
    extra_events: list | None = None, lineage_id: int | None = None,
    test_snapshot: str = "",
) -> Run:  # fmt: skip
    """Create a run pinned to a published version and drive it.

    ``test_snapshot`` (a draft snapshot's graph hash) makes it a test run of
    that snapshot instead: allowed on a flow that is not active, since
    trying the draft is what a draft is for, and never queued behind the
    flow's production runs by their concurrency key.

    ``parent`` ({"run_id", "node", "key"}) makes it a sub-flow's run: one per
    parent key, so a step that starts it again gets the same run back.
    ``extra_events`` (type, payload) are appended to the run's stream right
    after ``run.started``, in the same commit: a trigger records there which
    delivery started the run, so its dedup ledger can be rebuilt from the log.
    ``lineage_id`` joins the run to an earlier one's lineage (a sub-flow's run
    joins its parent's); by default a run starts a lineage of its own."""
    if parent:
        existing = Run.objects.filter(parent_key=parent["key"]).first()
        if existing is not None:
            return existing
        if lineage_id is None:
            lineage_id = lineage_of(parent["run_id"])

    if test_snapshot:
        number, key = 0, ""
        graph = snapshot_graph(flow.pk, test_snapshot)  # it exists, or DoesNotExist
    else:
        if flow.run_refusal:
            raise StartRefused(flow.run_refusal)
        number = version_number or flow.published_version
        if not number:
            raise StartRefused(f"“{flow.name}” has no published version to run.")
        if not FlowVersion.objects.filter(flow=flow, number=number).exists():
            raise StartRefused(f"“{flow.name}” has no version {number}.")
        graph = graph_of(flow.pk, number)
        key = concurrency_key(graph, input)
    business = business_key(graph, input)
    now = clock.now()
    try:
        with transaction.atomic():
            if key:
                _lock_concurrency_key(flow.pk, key)
            run = _create_and_start(
                flow=flow, number=number, input=input, actor=actor, now=now,
                replay_of=replay_of, mode=mode, root_run_id=root_run_id, carried=carried,
                parent=parent, key=key, extra_events=extra_events, lineage_id=lineage_id,
                business_key=business,
                test_snapshot=test_snapshot,
            )  # fmt: skip
    except IntegrityError:
        # Two attempts of one parent step raced to start its child: the
        # unique parent key let one through; return that one.
        if not parent:
            raise
        return Run.objects.get(parent_key=parent["key"])
    run.refresh_from_db()
    return run


def _create_and_start(
    *, flow, number: int, input: Any, actor: str, now, replay_of, mode, root_run_id, carried,
    parent: dict | None, key: str, extra_events: list | None, lineage_id: int | None = None,
    business_key: str = "",
    test_snapshot: str = "",
) -> Run:  # fmt: skip
    run = Run.objects.create(
        flow=flow,
        version_number=number,
        is_test=bool(test_snapshot),
        test_snapshot=test_snapshot,
        status=decider.RUN_PENDING,
        input=input,
        started_by=actor,
        replay_of_id=replay_of,
        parent_run_id=parent["run_id"] if parent else None,
        parent_node=parent["node"] if parent else "",
        parent_key=parent["key"] if parent else "",
        created_at=now,
        updated_at=now,
        business_key=business_key,
    )
    with run_session(run.pk, actor=actor, now=now, savepoint=False) as session:
        session.apply(
            decider.Start(
                input=input,
                root_run_id=root_run_id or run.pk,
                lineage_id=lineage_id or run.pk,
                flow_id=flow.pk,
                version=number,
                replay_of=replay_of,
                mode=mode,
                carried=carried,
                parent=parent,
                concurrency_key=key,
                queued=bool(key) and _queue_ahead(flow.pk, key, run.pk),
                business_key=business_key,
                test_snapshot=test_snapshot,
            )
        )
        session.events.extend(extra_events or [])
    return run


# --- concurrency keys ----------------------------------------------------------

CONCURRENCY_KEY_CHARS = 200


def concurrency_key(graph: Graph, input: Any) -> str:
    """The flow's ``settings.concurrency_key`` rendered from the trigger;
    "" when the flow has none. A key that cannot render refuses the start."""
    template = graph.settings.get("concurrency_key")
    if not template:
        return ""
    try:
        value = expressions.render(template, {"trigger": input})
    except expressions.ExpressionError as exc:
        raise StartRefused(
            f"The concurrency key cannot be computed from this input: {exc}."
        ) from None
    text = value if isinstance(value, str) else json_text(value)
    if len(text) > CONCURRENCY_KEY_CHARS:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


BUSINESS_KEY_CHARS = 200


def business_key(graph: Graph, input: Any) -> str:
    """The flow's ``settings.business_key`` rendered from the trigger (an
    order id, a customer): "" when the flow has none or this input lacks it.
    Unlike a concurrency key it only helps people find runs, so an input
    without it still starts its run."""
    template = graph.settings.get("business_key")
    if not template:
        return ""
    try:
        value = expressions.render(template, {"trigger": input})
    except expressions.ExpressionError:
        return ""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json_text(value)
    return text.strip()[:BUSINESS_KEY_CHARS]


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _lock_concurrency_key(flow_id: int, key: str) -> None:
    """Serialise arrivals (and releases) of one key, so that of two runs
    starting at once the later id always sees the earlier one and queues.
    On SQLite every write transaction already holds the database's lock."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.sha256(f"concurrency:{flow_id}:{key}".encode()).digest()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest[:8], "big", signed=True)]
        )


def _queue_ahead(flow_id: int, key: str, run_id: int) -> bool:
    return (
        Run.objects.filter(flow_id=flow_id, concurrency_key=key, pk__lt=run_id)
        .exclude(status__in=decider.RUN_TERMINAL)
        .exists()
    )


def release_queued(flow_id: int, key: str) -> int | None:
    """Start the oldest unfinished run of ``key`` if it is queued. Called on
    the commit that finishes a run, and by the sweep as the guarantee; a
    second call finds nothing to release."""
    with transaction.atomic():
        _lock_concurrency_key(flow_id, key)
        first = (
            Run.objects.filter(flow_id=flow_id, concurrency_key=key)
            .exclude(status__in=decider.RUN_TERMINAL)
            .order_by("pk")
            .first()
        )
        if first is None or first.wait_reason != decider.QUEUED_CONCURRENCY:
            return None
        with run_session(first.pk, savepoint=False) as session:
            try:
                session.apply(decider.Release())
            except decider.IllegalTransition:
                session.abandon()  # released meanwhile: the row read above was stale
                return None
    return first.pk


def replay_run(run_id: int, *, actor: str, newest_version: bool = False) -> Run:
    """A new run from the old one's recorded trigger input, linked to it.

    It is a new root: every side effect gets a new idempotency key, so the
    remote systems see new requests (a new charge, not a repeat).
    """
    old = Run.objects.select_related("flow").get(pk=run_id)
    if old.status not in decider.RUN_TERMINAL:
        raise StartRefused(f"Run {old.pk} is still {old.status}; replay a finished run.")
    number = old.flow.published_version if newest_version else old.version_number
    return start_run(
        flow=old.flow, input=old.input, actor=actor, version_number=number,
        replay_of=old.pk, mode="replay", lineage_id=old.lineage_id or old.pk,
        test_snapshot="" if newest_version else old.test_snapshot,
    )  # fmt: skip


def resume_run(run_id: int, *, actor: str) -> Run:
    """Continue a failed run from its failed step onward, as a new run that
    carries over every step that succeeded (they are not run again) and keeps
    the old run's idempotency keys, so a step that did reach the remote before
    failing is recognised there, not repeated."""
    old = Run.objects.select_related("flow").get(pk=run_id)
    if old.status != decider.RUN_FAILED:
        raise StartRefused(f"Run {old.pk} is {old.status}; only a failed run can be resumed.")
    carried = {
        step.node_id: {"output": step.output, "port": step.port or "out"}
        for step in Step.objects.filter(run=old, status=decider.SUCCEEDED)
    }
    return start_run(
        flow=old.flow, input=old.input, actor=actor, version_number=old.version_number,
        replay_of=old.pk, mode="resume", root_run_id=old.root_run_id or old.pk,
        carried=carried, lineage_id=old.lineage_id or old.pk, test_snapshot=old.test_snapshot,
    )  # fmt: skip


def lineage_of(run_id: int) -> int:
    """The lineage a run belongs to (its own id for a run from before
    lineages were recorded)."""
    lineage = Run.objects.filter(pk=run_id).values_list("lineage_id", flat=True).first()
    return lineage or run_id


def continue_run(run_id: int) -> None:
    with run_session(run_id):
        pass  # driving on is the whole change


@dataclass
class Claimed:
    connector: connectors.Connector
    ctx: connectors.Context
    lease_seconds: float
    work: Work
    target: str | None = None  # the breaker the call's outcome is counted on
    node_type: str = ""


def _claim(run_id: int, node: str, attempt: int) -> Claimed | None:
    # The claim drives on itself where it needs to (a disabled step).
    with run_session(run_id, drive=False) as session:
        claimed = session.claim(node, attempt)
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


def _finish(run_id: int, node: str, attempt: int, outcome: Outcome, eager: bool) -> Claimed | None:
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
                following = session.claim(ready[0].node, ready[0].attempt)
    return following


def execute_step(run_id: int, node: str, attempt: int) -> None:
    """Claim, perform and complete a side-effecting step; then, within a time
    budget, continue this run's next ready step here (eager continuation)."""
    deadline = time.monotonic() + _setting("LEDGERFLOW_EAGER_SECONDS", 2.0)
    claimed = _claim(run_id, node, attempt)
    while claimed is not None:
        work = claimed.work
        with _Heartbeat(work.run_id, work.node, work.attempt, claimed.lease_seconds):
            outcome = perform(claimed.connector, claimed.ctx)
        if claimed.target:
            _count_on_breaker(claimed.target, claimed.node_type, outcome)
        eager = time.monotonic() < deadline
        claimed = _finish(work.run_id, work.node, work.attempt, outcome, eager)


def _count_on_breaker(target: str, node_type: str, outcome: Outcome) -> None:
    """Only failures that say the target is unwell count against it (time-
    outs, refused connections, 5xx, 429); a 4xx answer is a healthy remote
    refusing a bad request."""
    failed = outcome.result is None and outcome.retryable
    try:
        breakers.record_call(target, ok=not failed, node_type=node_type, now=clock.now())
    except Exception:  # the outcome must still be recorded on the run
        log.exception("could not count a call on the breaker of %s", target)


# --- timers, leases, people -------------------------------------------------------


def fire_timer(run_id: int, node: str, attempt: int, kind: str) -> bool:
    """Fire a due timer once: deleting its row is the compare-and-set."""
    with run_session(run_id) as session:
        timer = Timer.objects.filter(
            run_id=run_id, node_id=node, attempt=attempt, kind=kind
        ).first()
        if timer is None or timer.due_at > session.now:
            session.abandon()
            return False
        try:
            session.apply(decider.FireTimer(node=node, attempt=attempt))
        except (decider.StaleCommand, decider.IllegalTransition) as exc:
            log.info("timer %s for run %s step %s is moot: %s", kind, run_id, node, exc)
            timer.delete()
            session.abandon()
            return False
    return True


def expire_lease(run_id: int, node: str, attempt: int) -> bool:
    with run_session(run_id) as session:
        step = session.state.steps.get(node)
        if not _lease_expired(step, attempt, session.now):
            session.abandon()
            return False
        assert step is not None  # _lease_expired says so
        session.apply(
            decider.ExpireLease(
                node=node, attempt=attempt, safe_to_rerun=_safe_to_rerun(session, step)
            )
        )
    return True


def _lease_expired(step: StepState | None, attempt: int, now: dt.datetime) -> bool:
    if step is None or step.status != decider.RUNNING or step.attempt != attempt:
        return False
    return step.lease_until is not None and step.lease_until <= now


def _safe_to_rerun(session: Session, step: StepState) -> bool:
    connector = connector_of(session.graph, step.node)
    try:
        config = connector.Config.model_validate(step.input)
    except ValueError:
        return settings.LEDGERFLOW_DRILL_RERUN_UNSAFE_STEPS
    return safe_to_rerun(connector, config)


def replay_dead_letter(run_id: int, node: str, *, actor: str, edited_input: Any = None,
                       edited: bool = False) -> None:  # fmt: skip
    with run_session(run_id, actor=actor) as session:
        session.apply(decider.Replay(node=node, edited_input=edited_input, edited=edited))


def discard_dead_letter(run_id: int, node: str, *, actor: str, reason: str) -> None:
    # Driving on matters here: a failed run may now compensate.
    with run_session(run_id, actor=actor) as session:
        session.apply(decider.Discard(node=node, reason=reason))


def signal_step(
    run_id: int, node: str, attempt: int, *, reason: str, output: Any = None,
    port: str = "out", actor: str = "system:engine", extra_events: list | None = None,
    error: str | None = None,
) -> None:  # fmt: skip
    """End a waiting step from outside and drive the run on, once: the
    decider refuses a second signal (the step no longer waits), so callers
    that race (two reviewers, a redelivered message) resume the run once.
    ``extra_events`` are appended to the run's stream in the same commit
    (the approval's own decision event, say), so they share its fate."""
    with run_session(run_id, actor=actor) as session:
        session.apply(
            decider.Signal(
                node=node, attempt=attempt, reason=reason, output=output, port=port, error=error
            )
        )
        session.events[:0] = extra_events or []


def give_up_wait(
    run_id: int, node: str, attempt: int, *, reason: str, error: str,
    actor: str = "system:engine", extra_events: list | None = None,
) -> None:  # fmt: skip
    """End a waiting step without its signal: it becomes a dead letter that an
    operator replays (the step runs again: a new request) or discards."""
    # It drives on like its twin ``signal_step`` with an error (it used to
    # skip that): a dead letter makes no step ready, but a drive after every
    # change is the rule that needs no proof case by case.
    with run_session(run_id, actor=actor) as session:
        session.apply(decider.GiveUp(node=node, attempt=attempt, reason=reason, error=error))
        session.events[:0] = extra_events or []


def cancel_run(run_id: int, *, actor: str, reason: str) -> None:
    with run_session(run_id, actor=actor) as session:
        session.apply(decider.Cancel(reason=reason))


# --- loops and sub-flows ---------------------------------------------------------


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


def signal_parent(child_run_id: int) -> bool:
    """Resume the step waiting for this finished sub-flow run, once. Called
    on the child's terminal commit and again by the sweep; a signal for a
    step that no longer waits changes nothing."""

    child = Run.objects.filter(pk=child_run_id).first()
    if child is None or not child.parent_run_id or child.status not in decider.RUN_TERMINAL:
        return False
    step = Step.objects.filter(run_id=child.parent_run_id, node_id=child.parent_node).first()
    if step is None or step.status != decider.WAITING or step.wait_reason != "subflow":
        return False
    if (step.output or {}).get("child_run_id") != child.pk:
        return False
    parent = Run.objects.get(pk=child.parent_run_id)
    on_failure = graph_for(parent).nodes[child.parent_node]["config"].get("on_failure", "fail")
    port, output, error = subflows.child_outcome(child, on_failure)
    try:
        signal_step(
            parent.pk, child.parent_node, step.attempt, reason="subflow", output=output,
            port=port, error=error, actor=f"run:{child.pk}",
        )  # fmt: skip
    except (decider.StaleCommand, decider.IllegalTransition) as exc:
        log.info("run %s: sub-flow result of run %s is moot: %s", parent.pk, child.pk, exc)
        return False
    return True


def cancel_orphans(parent_run_id: int) -> int:
    """Cancel the live sub-flow runs whose parent step was cancelled (the
    parent run was cancelled, compensated, or its merge went another way).
    Sent on the parent's commit; the recovery sweep repeats it."""
    cancelled = 0
    children = Run.objects.filter(parent_run_id=parent_run_id, status__in=decider.RUN_LIVE)
    for child in children:
        parent_step = Step.objects.filter(
            run_id=parent_run_id, node_id=child.parent_node, idempotency_key=child.parent_key
        ).first()
        if parent_step is None or parent_step.status != decider.CANCELLED:
            continue
        try:
            cancel_run(child.pk, actor=f"run:{parent_run_id}",
                       reason=f"run {parent_run_id} no longer waits for it")  # fmt: skip
        except decider.IllegalTransition as exc:  # compensating already, or finished
            log.info("sub-flow run %s was not cancelled: %s", child.pk, exc)
            continue
        cancelled += 1
    return cancelled
