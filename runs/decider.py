"""The run state machine: pure code, no ORM, no Celery.

``decide(state, command) -> [events]`` says what happens; ``evolve(state,
event) -> state`` says what it means. The driver persists the events and the
evolved state (the projection) in one transaction. Illegal transitions raise
``IllegalTransition``; a command about an attempt that is no longer current
(a redelivered message, a late result) raises ``StaleCommand``, which the
driver logs and drops.
"""

import copy
import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from connectors import base as connectors

# Step states.
PENDING, SCHEDULED, RUNNING, WAITING, RETRYING = (
    "pending",
    "scheduled",
    "running",
    "waiting",
    "retrying",
)
SUCCEEDED, FAILED, SKIPPED, DEAD_LETTERED, CANCELLED = (
    "succeeded",
    "failed",
    "skipped",
    "dead_lettered",
    "cancelled",
)
COMPENSATING, COMPENSATED = "compensating", "compensated"
STEP_STATES = [
    PENDING, SCHEDULED, RUNNING, WAITING, RETRYING, SUCCEEDED, FAILED, SKIPPED,
    DEAD_LETTERED, COMPENSATING, COMPENSATED, CANCELLED,
]  # fmt: skip
STEP_TERMINAL = {SUCCEEDED, FAILED, SKIPPED, CANCELLED, COMPENSATED}

# Which step state may follow which: the one table of legal moves.
STEP_TRANSITIONS: dict[str, set[str]] = {
    PENDING: {SCHEDULED, SKIPPED, CANCELLED},
    SCHEDULED: {RUNNING, CANCELLED},
    RUNNING: {SUCCEEDED, WAITING, RETRYING, DEAD_LETTERED, SCHEDULED},
    WAITING: {SUCCEEDED, CANCELLED},
    RETRYING: {SCHEDULED, CANCELLED},
    DEAD_LETTERED: {SCHEDULED, FAILED},
    SUCCEEDED: {COMPENSATING},
    COMPENSATING: {COMPENSATED, FAILED},
    FAILED: set(),
    SKIPPED: set(),
    CANCELLED: set(),
    COMPENSATED: set(),
}

# Run states. "waiting" is derived: running, but every live step waits.
RUN_PENDING, RUN_RUNNING, RUN_WAITING = "pending", "running", "waiting"
RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED = "succeeded", "failed", "cancelled"
RUN_COMPENSATING, RUN_COMPENSATED = "compensating", "compensated"
RUN_TERMINAL = {RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED, RUN_COMPENSATED}
# A run that still moves: steps may be claimed, timers fire, letters replay.
RUN_LIVE = {RUN_RUNNING, RUN_WAITING, RUN_COMPENSATING}

# A node's compensation runs as its own step, named after it.
UNDO_SUFFIX = "~undo"


def undo_of(node: str) -> str:
    return node + UNDO_SUFFIX


def base_node(node: str) -> tuple[str, str]:
    """(node, phase): "charge~undo" -> ("charge", "undo")."""
    if node.endswith(UNDO_SUFFIX):
        return node[: -len(UNDO_SUFFIX)], "undo"
    return node, "do"


class IllegalTransition(Exception):
    pass


class StaleCommand(Exception):
    """The command names an attempt that is no longer the step's current one."""


# --- graph -----------------------------------------------------------------


@dataclass
class Graph:
    """The parts of a published graph the decider reads."""

    nodes: dict[str, dict]
    incoming: dict[str, list[dict]]
    order: list[str]
    trigger: str
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: dict) -> "Graph":
        nodes = {node["id"]: node for node in document["nodes"]}
        incoming: dict[str, list[dict]] = {node_id: [] for node_id in nodes}
        successors: dict[str, list[str]] = {node_id: [] for node_id in nodes}
        for edge in document["edges"]:
            incoming[edge["to"]].append(edge)
            successors[edge["from"]].append(edge["to"])
        order, ready = [], [n for n in nodes if not incoming[n]]
        remaining = {n: len(incoming[n]) for n in nodes}
        while ready:
            current = ready.pop(0)
            order.append(current)
            for nxt in successors[current]:
                remaining[nxt] -= 1
                if remaining[nxt] == 0:
                    ready.append(nxt)
        trigger = next(n for n in order if not incoming[n])
        # A node's compensation is a step of its own, outside the edges: the
        # saga schedules it, never Advance.
        for node in list(nodes.values()):
            spec = node.get("compensation")
            if spec:
                nodes[undo_of(node["id"])] = {
                    "id": undo_of(node["id"]),
                    "type": spec["type"],
                    "config": spec.get("config", {}),
                    "retry": spec["retry"],
                }
        return cls(
            nodes=nodes, incoming=incoming, order=order, trigger=trigger,
            settings=document.get("settings", {}),
        )  # fmt: skip

    def compensable(self, node_id: str) -> bool:
        return undo_of(node_id) in self.nodes

    def connector(self, node_id: str) -> connectors.Connector:
        return connectors.get(self.nodes[node_id]["type"])

    def retry_policy(self, node_id: str) -> dict:
        return self.nodes[node_id]["retry"]


# --- state -----------------------------------------------------------------


@dataclass
class StepState:
    node: str
    status: str = PENDING
    attempt: int = 0
    revision: int = 0
    port: str | None = None
    input: Any = None
    output: Any = None
    error: str = ""
    errors: list = field(default_factory=list)
    idempotency_key: str = ""
    lease_until: dt.datetime | None = None
    due_at: dt.datetime | None = None
    wait_reason: str = ""
    outcome_unknown: bool = False
    scheduled_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


@dataclass
class RunState:
    run_id: int
    status: str = RUN_PENDING
    input: Any = None
    output: Any = None
    error: str = ""
    root_run_id: int | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    # When a run-level fact (status, output, error...) last changed.
    updated_at: dt.datetime | None = None


# --- commands ---------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    input: Any
    root_run_id: int
    flow_id: int
    version: int
    replay_of: int | None = None
    mode: str = "start"  # "start", "replay" (new keys) or "resume" (same keys)
    # Resume: steps that succeeded in the failed run, carried over with their
    # outputs so they are not run again: {node: {"output": ..., "port": ...}}.
    carried: dict | None = None


@dataclass(frozen=True)
class Advance:
    """Schedule what is ready, skip dead paths, finish the run when done."""


@dataclass(frozen=True)
class Claim:
    node: str
    attempt: int
    input: Any
    lease_until: dt.datetime


@dataclass(frozen=True)
class Complete:
    node: str
    attempt: int
    output: Any
    port: str = "out"


@dataclass(frozen=True)
class Wait:
    """The step waits: for its timer (``due_at``), or with no timer for a
    ``Signal`` from outside (a person's decision, a sub-flow's result)."""

    node: str
    attempt: int
    due_at: dt.datetime | None
    output: Any = None
    reason: str = "timer"
    port: str = "out"  # the port the step leaves by when the wait ends


@dataclass(frozen=True)
class Fail:
    node: str
    attempt: int
    error: str
    retryable: bool
    now: dt.datetime
    retry_after: float | None = None
    jitter_sample: float = 0.5  # uniform in [0, 1), drawn by the driver


@dataclass(frozen=True)
class Signal:
    """End a step's wait from outside (an approval decided, a sub-flow
    finished). ``reason`` must match the wait's, so a signal meant for one
    kind of wait can never end another."""

    node: str
    attempt: int
    reason: str
    output: Any = None
    port: str = "out"


@dataclass(frozen=True)
class FireTimer:
    node: str
    attempt: int


@dataclass(frozen=True)
class ExpireLease:
    node: str
    attempt: int
    safe_to_rerun: bool


@dataclass(frozen=True)
class ExtendLease:
    node: str
    attempt: int
    lease_until: dt.datetime


@dataclass(frozen=True)
class Replay:
    """Run a dead-lettered step again; an edited input bumps the revision."""

    node: str
    edited_input: Any = None
    edited: bool = False


@dataclass(frozen=True)
class Discard:
    node: str
    reason: str


@dataclass(frozen=True)
class Cancel:
    reason: str


Event = tuple[str, dict]


# --- helpers ----------------------------------------------------------------


def idempotency_key(
    *, root_run_id: int, node: str, iteration: int = 0, revision: int = 0, phase: str = "do"
) -> str:
    """Same for every retry and replay of one effect; new for a new input
    revision, a new root run, or the undo of the effect."""
    text = f"{root_run_id}:{node}:{iteration}:{revision}:{phase}"
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def backoff_seconds(policy: dict, attempt: int, jitter_sample: float) -> float:
    """Exponential backoff with a cap and symmetric jitter."""
    base = policy["initial_seconds"] * policy["multiplier"] ** max(0, attempt - 1)
    base = min(base, policy["max_seconds"])
    spread = policy["jitter"] * (2 * jitter_sample - 1)
    return max(0.0, base * (1 + spread))


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat() if moment else None


def _parse(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _step(state: RunState, node: str) -> StepState:
    try:
        return state.steps[node]
    except KeyError:
        raise IllegalTransition(f"run {state.run_id} has no node {node!r}") from None


def _current(step: StepState, status: str | set[str], attempt: int) -> None:
    statuses = {status} if isinstance(status, str) else status
    if step.attempt != attempt or step.status not in statuses:
        raise StaleCommand(
            f"step {step.node} is {step.status} at attempt {step.attempt}, "
            f"not {'/'.join(sorted(statuses))} at attempt {attempt}"
        )


def _live(state: RunState) -> None:
    if state.status not in RUN_LIVE:
        raise IllegalTransition(f"run {state.run_id} is {state.status}")


# --- decide -----------------------------------------------------------------


def decide(state: RunState, command, graph: Graph) -> list[Event]:
    handler = _HANDLERS.get(type(command))
    if handler is None:
        raise IllegalTransition(f"unknown command {command!r}")
    return handler(state, command, graph)


def _start(state: RunState, cmd: Start, graph: Graph) -> list[Event]:
    if state.status != RUN_PENDING:
        raise IllegalTransition(f"run {state.run_id} has already started")
    payload = {
        "input": cmd.input,
        "root_run_id": cmd.root_run_id,
        "flow_id": cmd.flow_id,
        "version": cmd.version,
        "nodes": graph.order,
    }
    if cmd.replay_of is not None:
        payload["replay_of"] = cmd.replay_of
        payload["mode"] = cmd.mode
    if cmd.carried:
        unknown = set(cmd.carried) - set(graph.nodes)
        if unknown:
            raise IllegalTransition(f"cannot carry over unknown nodes {sorted(unknown)}")
        payload["carried"] = cmd.carried
    return [("run.started", payload)]


def _edge_state(state: RunState, edge: dict) -> str:
    source = state.steps[edge["from"]]
    if source.status == SKIPPED:
        return "dead"
    if source.status in (SUCCEEDED, COMPENSATING, COMPENSATED):
        return "live" if source.port == edge["from_port"] else "dead"
    return "open"


def _advance(state: RunState, cmd: Advance, graph: Graph) -> list[Event]:
    if state.status == RUN_COMPENSATING:
        return _advance_saga(state, graph)
    if state.status not in (RUN_RUNNING, RUN_WAITING):
        return []
    events: list[Event] = []
    # Fold as we go, so a skip made here is seen by the nodes after it.
    scratch = state
    for node in graph.order:
        step = scratch.steps[node]
        if step.status != PENDING:
            continue
        edges = graph.incoming[node]
        if not edges:
            event: Event = ("step.scheduled", {"node": node, "attempt": 1, "revision": 0})
        else:
            states = [_edge_state(scratch, edge) for edge in edges]
            if "open" in states:
                continue
            if "live" in states:
                event = ("step.scheduled", {"node": node, "attempt": 1, "revision": 0})
            else:
                event = ("step.skipped", {"node": node})
        events.append(event)
        scratch = evolve(scratch, event)
    if all(s.status in (SUCCEEDED, SKIPPED) for s in scratch.steps.values()):
        outputs = {
            node: s.output
            for node, s in scratch.steps.items()
            if s.status == SUCCEEDED and not _has_live_successor(node, scratch, graph)
        }
        events.append(("run.succeeded", {"output": outputs}))
    return events


def _advance_saga(state: RunState, graph: Graph) -> list[Event]:
    """Undo what succeeded, one compensation at a time, newest effect first."""
    steps = state.steps.values()
    busy = {SCHEDULED, RUNNING, WAITING, RETRYING, DEAD_LETTERED}
    # A forward call still in flight may yet succeed; its undo waits for it.
    if any(s.status in busy for s in steps):
        return []
    todo = [
        s for s in steps
        if s.status == SUCCEEDED and base_node(s.node)[1] == "do" and graph.compensable(s.node)
    ]  # fmt: skip
    if todo:
        position = {node: index for index, node in enumerate(graph.order)}
        latest = max(todo, key=lambda s: (s.finished_at or _EPOCH, position[s.node]))
        return [("step.compensation_scheduled", {"node": undo_of(latest.node), "for": latest.node})]
    abandoned = [s.node for s in steps if base_node(s.node)[1] == "undo" and s.status == FAILED]
    if abandoned:
        return [("run.failed", {"error": state.error + "; compensation incomplete: "
                                + ", ".join(abandoned) + " discarded"})]  # fmt: skip
    return [("run.compensated", {"reason": state.error})]


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _compensable_steps(state: RunState, graph: Graph) -> bool:
    return any(s.status == SUCCEEDED and graph.compensable(s.node) for s in state.steps.values())


def _has_live_successor(node: str, state: RunState, graph: Graph) -> bool:
    return any(
        edge["from"] == node and state.steps[target].status == SUCCEEDED
        for target, edges in graph.incoming.items()
        for edge in edges
    )


def _claim(state: RunState, cmd: Claim, graph: Graph) -> list[Event]:
    _live(state)
    step = _step(state, cmd.node)
    _current(step, SCHEDULED, cmd.attempt)
    node, phase = base_node(cmd.node)
    key = idempotency_key(
        root_run_id=state.root_run_id or state.run_id, node=node, revision=step.revision,
        phase=phase,
    )  # fmt: skip
    return [
        (
            "step.started",
            {
                "node": cmd.node,
                "attempt": cmd.attempt,
                "input": cmd.input,
                "idempotency_key": key,
                "lease_until": _iso(cmd.lease_until),
            },
        )
    ]


def _complete(state: RunState, cmd: Complete, graph: Graph) -> list[Event]:
    step = _step(state, cmd.node)
    _current(step, RUNNING, cmd.attempt)
    ports = graph.connector(cmd.node).ports
    if cmd.port not in ports:
        raise IllegalTransition(f"node {cmd.node} has no port {cmd.port!r}")
    payload = {"node": cmd.node, "attempt": cmd.attempt, "output": cmd.output, "port": cmd.port}
    return [("step.succeeded", payload)]


def _wait(state: RunState, cmd: Wait, graph: Graph) -> list[Event]:
    step = _step(state, cmd.node)
    _current(step, RUNNING, cmd.attempt)
    # A timer wait leaves by its own port; a wait for a signal leaves by the
    # port the signal names (checked then), so its own port is not checked.
    if cmd.due_at is not None and cmd.port not in graph.connector(cmd.node).ports:
        raise IllegalTransition(f"node {cmd.node} has no port {cmd.port!r}")
    payload = {
        "port": cmd.port,
        "node": cmd.node,
        "attempt": cmd.attempt,
        "reason": cmd.reason,
        "due_at": _iso(cmd.due_at),
        "output": cmd.output,
    }
    return [("step.waiting", payload)]


def _fail(state: RunState, cmd: Fail, graph: Graph) -> list[Event]:
    step = _step(state, cmd.node)
    _current(step, RUNNING, cmd.attempt)
    events: list[Event] = [
        (
            "step.attempt_failed",
            {
                "node": cmd.node,
                "attempt": cmd.attempt,
                "error": cmd.error,
                "retryable": cmd.retryable,
            },
        )
    ]
    policy = graph.retry_policy(cmd.node)
    if cmd.retryable and cmd.attempt < policy["max_attempts"]:
        delay = backoff_seconds(policy, cmd.attempt, cmd.jitter_sample)
        if cmd.retry_after is not None:
            delay = max(delay, min(cmd.retry_after, policy["max_seconds"]))
        due = cmd.now + dt.timedelta(seconds=delay)
        events.append(
            (
                "step.retry_scheduled",
                {"node": cmd.node, "attempt": cmd.attempt + 1, "due_at": _iso(due)},
            )
        )
    else:
        reason = "retries exhausted" if cmd.retryable else "not retryable"
        events.append(
            (
                "step.dead_lettered",
                {
                    "node": cmd.node,
                    "attempt": cmd.attempt,
                    "error": cmd.error,
                    "reason": reason,
                    "outcome_unknown": False,
                    # An undo that cannot complete leaves an effect in place.
                    "severity": "critical" if base_node(cmd.node)[1] == "undo" else "error",
                },
            )
        )
    return events


def _signal(state: RunState, cmd: Signal, graph: Graph) -> list[Event]:
    _live(state)
    step = _step(state, cmd.node)
    _current(step, WAITING, cmd.attempt)
    if step.wait_reason != cmd.reason:
        raise StaleCommand(f"step {cmd.node} waits for {step.wait_reason}, not {cmd.reason}")
    if cmd.port not in graph.connector(cmd.node).ports:
        raise IllegalTransition(f"node {cmd.node} has no port {cmd.port!r}")
    payload = {"node": cmd.node, "attempt": cmd.attempt, "output": cmd.output, "port": cmd.port}
    return [("step.succeeded", payload)]


def _fire_timer(state: RunState, cmd: FireTimer, graph: Graph) -> list[Event]:
    _live(state)
    step = _step(state, cmd.node)
    _current(step, {WAITING, RETRYING}, cmd.attempt)
    if step.status == RETRYING:
        return [
            (
                "step.scheduled",
                {"node": cmd.node, "attempt": cmd.attempt, "revision": step.revision},
            )
        ]
    return [
        (
            "step.succeeded",
            {
                "node": cmd.node,
                "attempt": cmd.attempt,
                "output": step.output,
                "port": step.port or "out",
            },
        )
    ]


def _expire_lease(state: RunState, cmd: ExpireLease, graph: Graph) -> list[Event]:
    step = _step(state, cmd.node)
    _current(step, RUNNING, cmd.attempt)
    events: list[Event] = [("step.lease_expired", {"node": cmd.node, "attempt": cmd.attempt})]
    if cmd.safe_to_rerun:
        # Same idempotency key (same revision): the remote deduplicates.
        events.append(
            (
                "step.scheduled",
                {"node": cmd.node, "attempt": cmd.attempt + 1, "revision": step.revision},
            )
        )
    else:
        events.append(
            (
                "step.dead_lettered",
                {
                    "node": cmd.node,
                    "attempt": cmd.attempt,
                    "error": "the worker stopped during the call; the effect may or may not "
                    "have happened",
                    "reason": "outcome unknown",
                    "outcome_unknown": True,
                },
            )
        )
    return events


def _extend_lease(state: RunState, cmd: ExtendLease, graph: Graph) -> list[Event]:
    step = _step(state, cmd.node)
    _current(step, RUNNING, cmd.attempt)
    payload = {"node": cmd.node, "attempt": cmd.attempt, "lease_until": _iso(cmd.lease_until)}
    return [("step.lease_extended", payload)]


def _replay(state: RunState, cmd: Replay, graph: Graph) -> list[Event]:
    _live(state)
    step = _step(state, cmd.node)
    if step.status != DEAD_LETTERED:
        raise IllegalTransition(f"step {cmd.node} is {step.status}, not dead-lettered")
    revision = step.revision + 1 if cmd.edited else step.revision
    payload = {"node": cmd.node, "attempt": step.attempt + 1, "revision": revision}
    if cmd.edited:
        payload["edited_input"] = cmd.edited_input
    return [
        ("step.replayed", payload),
        ("step.scheduled", {k: payload[k] for k in ("node", "attempt", "revision")}),
    ]


def _discard(state: RunState, cmd: Discard, graph: Graph) -> list[Event]:
    _live(state)
    step = _step(state, cmd.node)
    if step.status != DEAD_LETTERED:
        raise IllegalTransition(f"step {cmd.node} is {step.status}, not dead-lettered")
    discarded = ("step.discarded", {"node": cmd.node, "reason": cmd.reason})
    if state.status == RUN_COMPENSATING:
        return [discarded]  # an abandoned undo; the saga goes on with the rest
    error = f"step {cmd.node} was discarded: {cmd.reason}"
    if _compensable_steps(state, graph):
        return [discarded, ("run.compensating", {"reason": error})]
    return [discarded, ("run.failed", {"error": error})]


def _cancel(state: RunState, cmd: Cancel, graph: Graph) -> list[Event]:
    _live(state)
    if state.status == RUN_COMPENSATING:
        raise IllegalTransition(f"run {state.run_id} is already compensating")
    if graph.settings.get("compensate_on_cancel", True) and _compensable_steps(state, graph):
        return [("run.compensating", {"reason": f"cancelled: {cmd.reason}"})]
    return [("run.cancelled", {"reason": cmd.reason})]


_HANDLERS = {
    Start: _start,
    Advance: _advance,
    Claim: _claim,
    Complete: _complete,
    Wait: _wait,
    Fail: _fail,
    FireTimer: _fire_timer,
    Signal: _signal,
    ExpireLease: _expire_lease,
    ExtendLease: _extend_lease,
    Replay: _replay,
    Discard: _discard,
    Cancel: _cancel,
}


# --- evolve -----------------------------------------------------------------


def _move(step: StepState, to: str) -> None:
    if to not in STEP_TRANSITIONS[step.status]:
        raise IllegalTransition(f"step {step.node} cannot go from {step.status} to {to}")
    step.status = to


def _run_facts(state: RunState) -> tuple:
    return (state.status, state.input, state.output, state.error, state.root_run_id,
            state.finished_at)  # fmt: skip


def evolve(state: RunState, event: Event, at: dt.datetime | None = None) -> RunState:
    """The state after ``event``. ``at`` is the event's time (for timestamps)."""
    after = _evolve(state, event, at)
    if _run_facts(after) != _run_facts(state):
        after.updated_at = at
    return after


def _evolve(state: RunState, event: Event, at: dt.datetime | None) -> RunState:
    kind, payload = event
    if not kind.startswith(("run.", "step.")):
        # Other facts recorded on a run's stream (an approval's claim, a
        # comment) belong to other projections; the run's state ignores them.
        return state
    # Copy on write: a new run state and steps dict; only the step an event
    # touches is copied. Earlier states stay valid (the decider relies on it).
    state = dataclasses.replace(state, steps=dict(state.steps))
    if kind == "run.started":
        if state.status != RUN_PENDING:
            raise IllegalTransition(f"run {state.run_id} has already started")
        state.status = RUN_RUNNING
        state.input = payload["input"]
        state.root_run_id = payload["root_run_id"]
        state.steps = {node: StepState(node=node) for node in payload["nodes"]}
        for node, done in (payload.get("carried") or {}).items():
            state.steps[node] = StepState(
                node=node, status=SUCCEEDED, output=done["output"], port=done["port"],
                finished_at=at,
            )  # fmt: skip
        state.started_at = at
        return state
    if kind == "run.compensating":
        if state.status not in (RUN_RUNNING, RUN_WAITING):
            raise IllegalTransition(f"run {state.run_id} is {state.status}")
        state.status = RUN_COMPENSATING
        state.error = payload["reason"]
        for node, step in state.steps.items():
            if step.status in (PENDING, SCHEDULED, WAITING, RETRYING):
                state.steps[node] = dataclasses.replace(step, status=CANCELLED, due_at=None)
        return state
    if kind.startswith("run."):
        if state.status in RUN_TERMINAL:
            raise IllegalTransition(f"run {state.run_id} is already {state.status}")
        state.status = {"run.succeeded": RUN_SUCCEEDED, "run.failed": RUN_FAILED,
                        "run.cancelled": RUN_CANCELLED,
                        "run.compensated": RUN_COMPENSATED}[kind]  # fmt: skip
        state.output = payload.get("output")
        state.error = payload.get("error") or payload.get("reason") or ""
        state.finished_at = at
        if kind == "run.cancelled":
            for node, step in state.steps.items():
                if step.status in (PENDING, SCHEDULED, WAITING, RETRYING):
                    state.steps[node] = dataclasses.replace(step, status=CANCELLED, due_at=None)
        return state
    if kind == "step.compensation_scheduled":
        original = copy.copy(_step(state, payload["for"]))
        _move(original, COMPENSATING)
        state.steps[original.node] = original
        state.steps[payload["node"]] = StepState(
            node=payload["node"], status=SCHEDULED, attempt=1, scheduled_at=at
        )
        return state
    step = copy.copy(_step(state, payload["node"]))
    state.steps[step.node] = step
    node, phase = base_node(step.node)
    if phase == "undo" and kind in ("step.succeeded", "step.discarded"):
        original = copy.copy(state.steps[node])
        _move(original, COMPENSATED if kind == "step.succeeded" else FAILED)
        original.finished_at = at
        state.steps[node] = original
    if kind == "step.scheduled":
        _move(step, SCHEDULED)
        step.attempt = payload["attempt"]
        step.revision = payload["revision"]
        step.scheduled_at = at
        step.due_at = None
        step.wait_reason = ""
        step.lease_until = None
    elif kind == "step.skipped":
        _move(step, SKIPPED)
        step.finished_at = at
    elif kind == "step.started":
        _move(step, RUNNING)
        step.input = payload["input"]
        step.idempotency_key = payload["idempotency_key"]
        step.lease_until = _parse(payload["lease_until"])
        step.started_at = at
        step.error = ""
    elif kind == "step.lease_extended":
        step.lease_until = _parse(payload["lease_until"])
    elif kind == "step.succeeded":
        _move(step, SUCCEEDED)
        step.output = payload["output"]
        step.port = payload["port"]
        step.lease_until = None
        step.due_at = None
        step.wait_reason = ""
        step.finished_at = at
    elif kind == "step.waiting":
        _move(step, WAITING)
        step.due_at = _parse(payload["due_at"])
        step.wait_reason = payload["reason"]
        step.output = payload.get("output")
        step.port = payload.get("port", "out")
        step.lease_until = None
    elif kind == "step.attempt_failed":
        step.error = payload["error"]
        step.errors = [
            *step.errors,
            {"attempt": payload["attempt"], "error": payload["error"], "at": _iso(at)},
        ]
    elif kind == "step.retry_scheduled":
        _move(step, RETRYING)
        step.attempt = payload["attempt"]
        step.due_at = _parse(payload["due_at"])
        step.wait_reason = "retry"
        step.lease_until = None
    elif kind == "step.dead_lettered":
        _move(step, DEAD_LETTERED)
        step.error = payload["error"]
        step.outcome_unknown = payload["outcome_unknown"]
        step.lease_until = None
    elif kind == "step.lease_expired":
        step.errors = [
            *step.errors,
            {"attempt": payload["attempt"], "error": "lease expired", "at": _iso(at)},
        ]
    elif kind == "step.replayed":
        if "edited_input" in payload:
            step.input = payload["edited_input"]
        step.outcome_unknown = False
    elif kind == "step.discarded":
        _move(step, FAILED)
        step.finished_at = at
    else:
        raise IllegalTransition(f"unknown event type {kind}")
    state.status = _derived_run_status(state)
    return state


def _derived_run_status(state: RunState) -> str:
    if state.status not in (RUN_RUNNING, RUN_WAITING):
        return state.status  # compensating stays so until the saga ends
    busy = any(s.status in (SCHEDULED, RUNNING) for s in state.steps.values())
    parked = any(s.status in (WAITING, RETRYING, DEAD_LETTERED) for s in state.steps.values())
    return RUN_WAITING if parked and not busy else RUN_RUNNING
