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
    # scheduled -> waiting: held before its call (breaker open, no rate
    # token) without spending the attempt; waiting -> scheduled: released.
    SCHEDULED: {RUNNING, CANCELLED, WAITING},
    # FAILED: a node whose policy is to fail the run rather than wait for a
    # person (on_failure: fail_run).
    RUNNING: {SUCCEEDED, WAITING, RETRYING, DEAD_LETTERED, SCHEDULED, FAILED},
    # A wait may end from outside in a dead letter (an approval nobody decided,
    # by the flow's policy; a sub-flow that failed, when the node says so), or
    # go back to scheduled when it was a hold (an open breaker, a rate limit).
    WAITING: {SUCCEEDED, CANCELLED, DEAD_LETTERED, SCHEDULED},
    RETRYING: {SCHEDULED, CANCELLED},
    # Cancelled: a losing branch of a first-wins merge that had fired.
    DEAD_LETTERED: {SCHEDULED, FAILED, CANCELLED},
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

# Why a scheduled step may be held back before its call. A held step keeps
# its attempt: it never reached the remote, so it spent nothing.
HOLD_CIRCUIT, HOLD_RATE_LIMIT = "circuit", "rate_limit"
HOLD_REASONS = {HOLD_CIRCUIT, HOLD_RATE_LIMIT}
# A run that arrived while an earlier run with its concurrency key is
# unfinished waits, before any step, for that run to finish.
QUEUED_CONCURRENCY = "concurrency"

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
    # For each first-wins merge: the nodes that only lead into it, so they
    # may be cancelled once it has fired.
    losers: dict[str, set[str]] = field(default_factory=dict)

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
            if spec and spec.get("default"):
                # The connector's own undo, on the node's own config.
                nodes[undo_of(node["id"])] = {
                    "id": undo_of(node["id"]),
                    "type": node["type"],
                    "config": node.get("config", {}),
                    "retry": spec["retry"],
                    "connector_undo": True,
                }
            elif spec:
                nodes[undo_of(node["id"])] = {
                    "id": undo_of(node["id"]),
                    "type": spec["type"],
                    "config": spec.get("config", {}),
                    "retry": spec["retry"],
                }
        return cls(
            nodes=nodes, incoming=incoming, order=order, trigger=trigger,
            settings=document.get("settings", {}),
            losers=_losing_branches(nodes, incoming, successors),
        )  # fmt: skip

    def ports(self, node_id: str) -> tuple[str, ...]:
        return self.connector(node_id).ports_for(self.nodes[node_id].get("config", {}))

    def merge_mode(self, node_id: str) -> tuple[str, str]:
        """(mode, losers) of a merge node; ("all", "ignore") for any other."""
        node = self.nodes[node_id]
        if node["type"] != MERGE_TYPE:
            return "all", "ignore"
        config = node.get("config", {})
        return config.get("mode", "all"), config.get("losers", "ignore")

    def compensable(self, node_id: str) -> bool:
        return undo_of(node_id) in self.nodes

    def connector(self, node_id: str) -> connectors.Connector:
        impl = connectors.get(self.nodes[node_id]["type"])
        if self.nodes[node_id].get("connector_undo"):
            return connectors.compensation_step(impl)
        return impl

    def retry_policy(self, node_id: str) -> dict:
        return self.nodes[node_id]["retry"]


MERGE_TYPE = "merge"


def _losing_branches(nodes: dict, incoming: dict, successors: dict) -> dict[str, set[str]]:
    """For each merge, the nodes every one of whose paths runs into it: a
    node that can also reach the end of the flow some other way is not the
    merge's to cancel."""
    losers: dict[str, set[str]] = {}
    for merge, node in nodes.items():
        if node["type"] != MERGE_TYPE or merge not in incoming:
            continue
        ancestors: set[str] = set()
        stack = [edge["from"] for edge in incoming[merge]]
        while stack:
            current = stack.pop()
            if current not in ancestors:
                ancestors.add(current)
                stack.extend(edge["from"] for edge in incoming[current])
        # Nodes that reach a sink without passing through the merge.
        escapes = {n for n in successors if not successors[n] and n != merge}
        changed = True
        while changed:
            changed = False
            for candidate in successors:
                if candidate in escapes or candidate == merge:
                    continue
                if any(nxt in escapes for nxt in successors[candidate]):
                    escapes.add(candidate)
                    changed = True
        losers[merge] = {n for n in ancestors if n not in escapes and incoming[n]}
    return losers


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
    wait_target: str = ""  # the breaker or rate limit a held step waits on
    outcome_unknown: bool = False
    # A loop's finished iterations: {"<index>": output} (JSON keys are text).
    iterations: dict = field(default_factory=dict)
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
    # Shared by a run and every run resumed, replayed or started as a
    # sub-flow from it (separation of duties spans them); never keys effects.
    lineage_id: int | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    # When a run-level fact (status, output, error...) last changed.
    updated_at: dt.datetime | None = None
    # The flow's rendered concurrency key ("" when it has none), and why the
    # run as a whole waits ("concurrency": queued behind an earlier run).
    concurrency_key: str = ""
    wait_reason: str = ""


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
    # A sub-flow's run: {"run_id", "node", "key"} of the step that started it.
    parent: dict | None = None
    concurrency_key: str = ""
    # An earlier run with the same concurrency key is unfinished: wait for it.
    queued: bool = False
    lineage_id: int | None = None


@dataclass(frozen=True)
class Release:
    """A queued run's predecessors have finished: it may start its steps."""


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
class CompleteIteration:
    """A loop step finished iteration ``index``; recorded while the step
    still runs, so a retry or a new worker does not repeat it."""

    node: str
    attempt: int
    index: int
    output: Any = None


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
class Hold:
    """Hold a scheduled step back before its call, until ``due_at``: its
    target's breaker is open or its rate limit has no token. The attempt is
    not spent; when the timer fires the step is scheduled again."""

    node: str
    attempt: int
    reason: str
    due_at: dt.datetime
    target: str = ""


@dataclass(frozen=True)
class Fail:
    node: str
    attempt: int
    error: str
    retryable: bool
    now: dt.datetime
    retry_after: float | None = None
    jitter_sample: float = 0.5  # uniform in [0, 1), drawn by the driver
    # From the step's side-effect class, resolved by the driver: may it run
    # again without repeating its effect (none, idempotent, compensatable)?
    safe_to_rerun: bool = True
    # The connector's word: the request may have reached the remote. Only
    # proof that nothing left (no connection was made, a config error before
    # any I/O, a remote that answered it did not process it) clears it.
    may_have_been_sent: bool = True


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
    # Set when the outside outcome is a failure the step must not hide: the
    # step becomes a dead letter with this error instead of succeeding.
    error: str | None = None


@dataclass(frozen=True)
class GiveUp:
    """End a step's wait without its signal: the step becomes a dead letter
    for a person (an approval that no one decided in time, by the flow's
    policy). ``reason`` must match the wait's, like a ``Signal``."""

    node: str
    attempt: int
    reason: str
    error: str


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
    if cmd.lineage_id is not None:
        payload["lineage_id"] = cmd.lineage_id
    if cmd.replay_of is not None:
        payload["replay_of"] = cmd.replay_of
        payload["mode"] = cmd.mode
    if cmd.carried:
        unknown = set(cmd.carried) - set(graph.nodes)
        if unknown:
            raise IllegalTransition(f"cannot carry over unknown nodes {sorted(unknown)}")
        payload["carried"] = cmd.carried
    if cmd.parent:
        payload["parent"] = cmd.parent
    if cmd.concurrency_key:
        payload["concurrency_key"] = cmd.concurrency_key
    events: list[Event] = [("run.started", payload)]
    if cmd.queued:
        if not cmd.concurrency_key:
            raise IllegalTransition("only a run with a concurrency key can be queued")
        events.append(("run.queued", {"reason": QUEUED_CONCURRENCY, "key": cmd.concurrency_key}))
    return events


def _release(state: RunState, cmd: Release, graph: Graph) -> list[Event]:
    if state.wait_reason != QUEUED_CONCURRENCY or state.status not in RUN_LIVE:
        raise IllegalTransition(f"run {state.run_id} is not queued")
    return [("run.released", {"key": state.concurrency_key})]


def _edge_state(state: RunState, edge: dict) -> str:
    source = state.steps[edge["from"]]
    if source.status in (SKIPPED, CANCELLED):
        return "dead"
    if source.status in (SUCCEEDED, COMPENSATING, COMPENSATED):
        return "live" if source.port == edge["from_port"] else "dead"
    return "open"


def _advance(state: RunState, cmd: Advance, graph: Graph) -> list[Event]:
    if state.status == RUN_COMPENSATING:
        return _advance_saga(state, graph)
    if state.status not in (RUN_RUNNING, RUN_WAITING) or state.wait_reason:
        return []  # finished, or queued behind an earlier run
    events: list[Event] = []
    # Fold as we go, so a skip made here is seen by the nodes after it.
    scratch = state
    for node in graph.order:
        step = scratch.steps[node]
        if step.status != PENDING:
            continue
        edges = graph.incoming[node]
        mode = graph.merge_mode(node)[0]
        if not edges:
            event: Event = ("step.scheduled", {"node": node, "attempt": 1, "revision": 0})
        else:
            states = [_edge_state(scratch, edge) for edge in edges]
            # A first-wins merge fires on the first live branch; any other
            # node (and an all-branches merge) waits until no edge is open.
            first_wins = mode == "first" and "live" in states
            if "open" in states and not first_wins:
                continue
            if "live" in states:
                event = ("step.scheduled", {"node": node, "attempt": 1, "revision": 0})
            else:
                event = ("step.skipped", {"node": node})
        events.append(event)
        scratch = evolve(scratch, event)
    # Once a first-wins merge that cancels has fired, every step of a losing
    # branch that is idle now (including one that failed or began a retry
    # after the merge fired) is cancelled.
    for merge, losers in graph.losers.items():
        if graph.merge_mode(merge) != ("first", "cancel"):
            continue
        if scratch.steps[merge].status in (PENDING, SKIPPED, CANCELLED):
            continue
        for loser in _cancellable(scratch, losers):
            cancelled: Event = ("step.cancelled", {"node": loser, "reason": f"{merge} fired"})
            events.append(cancelled)
            scratch = evolve(scratch, cancelled)
    if all(s.status in (SUCCEEDED, SKIPPED, CANCELLED) for s in scratch.steps.values()):
        outputs = {
            node: s.output
            for node, s in scratch.steps.items()
            if s.status == SUCCEEDED and not _has_live_successor(node, scratch, graph)
        }
        events.append(("run.succeeded", {"output": outputs}))
    return events


def _cancellable(state: RunState, nodes: set[str]) -> list[str]:
    """Steps of a losing branch that are not in the middle of an effect. A
    running step is left to finish (its result is then unused): cutting a
    call off mid-flight would leave its outcome unknown. A dead letter there
    is moot, so it is cancelled rather than left to fail the run."""
    idle = (PENDING, SCHEDULED, RETRYING, WAITING, DEAD_LETTERED)
    return sorted(n for n in nodes if n in state.steps and state.steps[n].status in idle)


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
    ports = graph.ports(cmd.node)
    if cmd.port not in ports:
        raise IllegalTransition(f"node {cmd.node} has no port {cmd.port!r}")
    payload = {"node": cmd.node, "attempt": cmd.attempt, "output": cmd.output, "port": cmd.port}
    return [("step.succeeded", payload)]


def _wait(state: RunState, cmd: Wait, graph: Graph) -> list[Event]:
    step = _step(state, cmd.node)
    _current(step, RUNNING, cmd.attempt)
    # A timer's wait leaves by the port named now; a wait for a signal
    # leaves by the port the signal names (checked then).
    if cmd.due_at is not None and cmd.port not in graph.ports(cmd.node):
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


def _hold(state: RunState, cmd: Hold, graph: Graph) -> list[Event]:
    _live(state)
    step = _step(state, cmd.node)
    _current(step, SCHEDULED, cmd.attempt)
    if cmd.reason not in HOLD_REASONS:
        raise IllegalTransition(f"a step cannot be held for {cmd.reason!r}")
    payload = {"node": cmd.node, "attempt": cmd.attempt, "reason": cmd.reason,
               "due_at": _iso(cmd.due_at), "target": cmd.target}  # fmt: skip
    return [("step.held", payload)]


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
                "may_have_been_sent": cmd.may_have_been_sent,
            },
        )
    ]
    if cmd.may_have_been_sent and not cmd.safe_to_rerun:
        # The remote may have acted, and this step cannot be repeated without
        # repeating its effect: a person checks, as after a crash mid-call.
        events.append(_outcome_unknown(cmd.node, cmd.attempt, cmd.error))
        return events
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
    elif graph.nodes[cmd.node].get("on_failure") == "fail_run":
        # A failure the flow expects (stock gone, card declined): the run
        # fails at once and compensates what ran, without waiting for a person.
        reason = "retries exhausted" if cmd.retryable else "not retryable"
        error = f"step {cmd.node} failed ({reason}): {cmd.error}"
        events.append(("step.failed", {"node": cmd.node, "attempt": cmd.attempt,
                                       "error": cmd.error, "reason": reason}))  # fmt: skip
        if _compensable_steps(state, graph):
            events.append(("run.compensating", {"reason": error}))
        else:
            events.append(("run.failed", {"error": error}))
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


def _outcome_unknown(node: str, attempt: int, error: str) -> Event:
    payload = {
        "node": node,
        "attempt": attempt,
        "error": f"{error}; the request may have reached the remote, and the step is not "
        "safe to repeat: check whether the effect happened before replaying it",
        "reason": "outcome unknown",
        "outcome_unknown": True,
        "severity": "critical" if base_node(node)[1] == "undo" else "error",
    }
    return ("step.dead_lettered", payload)


def _waiting_for(state: RunState, node: str, attempt: int, reason: str) -> StepState:
    """The step that waits for ``reason`` at ``attempt``: what a signal or a
    give-up from outside may end. A hold (open breaker, rate limit) is ended
    by its timer only."""
    _live(state)
    step = _step(state, node)
    _current(step, WAITING, attempt)
    if step.wait_reason in HOLD_REASONS:
        raise IllegalTransition(
            f"step {node} is held ({step.wait_reason}); only its timer ends that"
        )
    if step.wait_reason != reason:
        raise StaleCommand(f"step {node} waits for {step.wait_reason}, not {reason}")
    return step


def _wait_dead_lettered(node: str, attempt: int, error: str, reason: str) -> list[Event]:
    payload = {"node": node, "attempt": attempt, "error": error, "reason": reason,
               "outcome_unknown": False, "severity": "error"}  # fmt: skip
    return [("step.dead_lettered", payload)]


def _signal(state: RunState, cmd: Signal, graph: Graph) -> list[Event]:
    _waiting_for(state, cmd.node, cmd.attempt, cmd.reason)
    if cmd.error is not None:
        return _wait_dead_lettered(cmd.node, cmd.attempt, cmd.error, f"{cmd.reason} failed")
    if cmd.port not in graph.ports(cmd.node):
        raise IllegalTransition(f"node {cmd.node} has no port {cmd.port!r}")
    payload = {"node": cmd.node, "attempt": cmd.attempt, "output": cmd.output, "port": cmd.port}
    return [("step.succeeded", payload)]


def _give_up(state: RunState, cmd: GiveUp, graph: Graph) -> list[Event]:
    _waiting_for(state, cmd.node, cmd.attempt, cmd.reason)
    return _wait_dead_lettered(cmd.node, cmd.attempt, cmd.error, f"{cmd.reason} abandoned")


def _complete_iteration(state: RunState, cmd: CompleteIteration, graph: Graph) -> list[Event]:
    _live(state)
    step = _step(state, cmd.node)
    _current(step, RUNNING, cmd.attempt)
    if cmd.index < 0:
        raise IllegalTransition(f"iteration {cmd.index} of {cmd.node} is not an index")
    if str(cmd.index) in step.iterations:
        raise StaleCommand(f"iteration {cmd.index} of {cmd.node} is already recorded")
    payload = {"node": cmd.node, "attempt": cmd.attempt, "index": cmd.index,
               "output": cmd.output}  # fmt: skip
    return [("step.iteration_succeeded", payload)]


def _fire_timer(state: RunState, cmd: FireTimer, graph: Graph) -> list[Event]:
    _live(state)
    step = _step(state, cmd.node)
    _current(step, {WAITING, RETRYING}, cmd.attempt)
    if step.status == RETRYING or step.wait_reason in HOLD_REASONS:
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
    Release: _release,
    Advance: _advance,
    Hold: _hold,
    Claim: _claim,
    Complete: _complete,
    Wait: _wait,
    Fail: _fail,
    FireTimer: _fire_timer,
    Signal: _signal,
    GiveUp: _give_up,
    CompleteIteration: _complete_iteration,
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
            state.finished_at, state.concurrency_key, state.wait_reason)  # fmt: skip


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
        state.lineage_id = payload.get("lineage_id")
        state.steps = {node: StepState(node=node) for node in payload["nodes"]}
        for node, done in (payload.get("carried") or {}).items():
            state.steps[node] = StepState(
                node=node, status=SUCCEEDED, output=done["output"], port=done["port"],
                finished_at=at,
            )  # fmt: skip
        state.started_at = at
        state.concurrency_key = payload.get("concurrency_key", "")
        return state
    if kind == "run.queued":
        if state.status != RUN_RUNNING or any(
            s.status not in (PENDING, SUCCEEDED) for s in state.steps.values()
        ):
            raise IllegalTransition(f"run {state.run_id} has begun; it cannot queue")
        state.status = RUN_WAITING
        state.wait_reason = payload["reason"]
        return state
    if kind == "run.released":
        if state.wait_reason != QUEUED_CONCURRENCY or state.status not in RUN_LIVE:
            raise IllegalTransition(f"run {state.run_id} is not queued")
        state.status = RUN_RUNNING
        state.wait_reason = ""
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
        state.wait_reason = ""
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
        if step.status == WAITING and step.wait_reason not in HOLD_REASONS:
            raise IllegalTransition(f"step {step.node} waits for {step.wait_reason}, not a hold")
        _move(step, SCHEDULED)
        step.attempt = payload["attempt"]
        step.revision = payload["revision"]
        step.scheduled_at = at
        step.due_at = None
        step.wait_reason = ""
        step.wait_target = ""
        step.lease_until = None
    elif kind == "step.skipped":
        _move(step, SKIPPED)
        step.finished_at = at
    elif kind == "step.cancelled":
        _move(step, CANCELLED)
        step.due_at = None
        step.wait_reason = ""
        step.finished_at = at
    elif kind == "step.iteration_succeeded":
        step.iterations = {**step.iterations, str(payload["index"]): payload["output"]}
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
    elif kind == "step.held":
        if step.status != SCHEDULED or payload["attempt"] != step.attempt:
            raise IllegalTransition(
                f"step {step.node} is {step.status}; only a scheduled step is held"
            )
        _move(step, WAITING)
        step.due_at = _parse(payload["due_at"])
        step.wait_reason = payload["reason"]
        step.wait_target = payload.get("target", "")
    elif kind == "step.waiting":
        if step.status != RUNNING:
            raise IllegalTransition(f"step {step.node} is {step.status}, not running")
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
            # A new revision is a new set of effects (new keys): a loop
            # starts its iterations over.
            step.iterations = {}
        step.outcome_unknown = False
    elif kind == "step.discarded":
        _move(step, FAILED)
        step.finished_at = at
    elif kind == "step.failed":
        _move(step, FAILED)
        step.error = payload["error"]
        step.lease_until = None
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
