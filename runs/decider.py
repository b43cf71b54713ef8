"""The run state machine: pure code on the standard library alone (no
Django, no app, no connector), so it can be read, tested and replayed
anywhere.

``decide(state, command, graph) -> [events]`` says what happens; ``evolve(
state, event) -> state`` says what it means. The driver persists the events
and the evolved state (the projection) in one transaction. Each command type
has its handler in ``DECIDERS``, each event type in ``EVOLVERS``; the legal
moves are the tables ``STEP_TRANSITIONS`` and ``RUN_TRANSITIONS``, checked in
``_move`` and ``_move_run`` only. What a node's connector means to a run
(``NodeFacts``) is resolved into the ``Graph`` by the driver beforehand
(``runs/graph_facts.py``). Illegal transitions raise ``IllegalTransition``; a
command about an attempt that is no longer current (a redelivered message, a
late result) raises ``StaleCommand``, which the driver logs and drops.
"""

import copy
import dataclasses
import datetime as dt
import graphlib
import hashlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

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

# Which step state may follow which: the one table of a step's legal moves.
# Which event makes a move is its handler's business (a hold leaves only
# "scheduled", a call's wait only "running").
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
RUN_UNFINISHED = {RUN_PENDING, *RUN_LIVE}
RUN_FINISHES = {"run.succeeded": RUN_SUCCEEDED, "run.failed": RUN_FAILED,
                "run.cancelled": RUN_CANCELLED, "run.compensated": RUN_COMPENSATED}  # fmt: skip

# Which run event may happen in which run states, and the state it leads
# to: the one table of a run's legal moves. Between running and waiting a
# run also moves by itself, as its steps do ("waiting" is derived).
RUN_TRANSITIONS: dict[str, tuple[set[str], str]] = {
    "run.started": ({RUN_PENDING}, RUN_RUNNING),
    "run.queued": ({RUN_RUNNING}, RUN_WAITING),
    # Only a run still queued: one cancelled while queued, and compensating
    # what a resume carried over, finishes its saga instead of starting.
    "run.released": ({RUN_WAITING}, RUN_RUNNING),
    "run.compensating": ({RUN_RUNNING, RUN_WAITING}, RUN_COMPENSATING),
    **{kind: (RUN_UNFINISHED, to) for kind, to in RUN_FINISHES.items()},
}

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


class MigrationRefused(IllegalTransition):
    """The run cannot move to the other version; ``problems`` names each
    offending node with why: [(node, why), ...]."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []


# --- graph -----------------------------------------------------------------


@dataclass(frozen=True)
class NodeFacts:
    """What a node's connector means to the run, resolved by the driver from
    the connector registry before deciding (``runs/graph_facts.py``), so the
    decider itself needs no connector and no Django."""

    # The ports a step of this node may leave by (from its config, for a
    # connector whose ports depend on it).
    ports: tuple[str, ...] = ("out",)
    # Pure computation: the driver runs it inside the deciding transaction.
    inline: bool = False
    # The connector's side-effect class (a config may refine it at run time:
    # the driver judges that, and says it in ``Fail`` and ``ExpireLease``).
    side_effect: str = "none"
    is_trigger: bool = False
    dynamic_ports: bool = False
    # The connector has an undo of its own (a compensation "default" can use).
    has_own_undo: bool = False
    # False when no connector of the node's type is registered now.
    installed: bool = True


# Reads a graph node (or a compensation step made from one) and returns its facts.
FactsOf = Callable[[dict], NodeFacts]


@dataclass(frozen=True)
class Graph:
    """The parts of a published graph the decider reads."""

    nodes: dict[str, dict]
    incoming: dict[str, list[dict]]
    order: list[str]
    trigger: str
    facts: dict[str, NodeFacts]
    settings: dict = field(default_factory=dict)
    # For each first-wins merge: the nodes that only lead into it, so they
    # may be cancelled once it has fired.
    losers: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: dict, facts_of: FactsOf) -> "Graph":
        nodes = {node["id"]: node for node in document["nodes"]}
        incoming: dict[str, list[dict]] = {node_id: [] for node_id in nodes}
        successors: dict[str, list[str]] = {node_id: [] for node_id in nodes}
        for edge in document["edges"]:
            incoming[edge["to"]].append(edge)
            successors[edge["from"]].append(edge["to"])
        order = topological_order(nodes, document["edges"])
        trigger = next(n for n in order if not incoming[n])
        nodes.update(_compensation_nodes(nodes))
        return cls(
            nodes=nodes, incoming=incoming, order=order, trigger=trigger,
            facts={node_id: facts_of(node) for node_id, node in nodes.items()},
            settings=document.get("settings", {}),
            losers=_losing_branches(nodes, incoming, successors),
        )  # fmt: skip

    def ports(self, node_id: str) -> tuple[str, ...]:
        return self.facts[node_id].ports

    def inline(self, node_id: str) -> bool:
        return self.facts[node_id].inline

    def merge_mode(self, node_id: str) -> tuple[str, str]:
        """(mode, losers) of a merge node; ("all", "ignore") for any other."""
        node = self.nodes[node_id]
        if node["type"] != MERGE_TYPE:
            return "all", "ignore"
        config = node.get("config", {})
        return config.get("mode", "all"), config.get("losers", "ignore")

    def compensable(self, node_id: str) -> bool:
        return undo_of(node_id) in self.nodes

    def retry_policy(self, node_id: str) -> dict:
        return self.nodes[node_id]["retry"]


MERGE_TYPE = "merge"


def topological_order(nodes: Iterable[str], edges: Iterable[dict]) -> list[str]:
    """Nodes before their successors. Ties go first to the earlier node of
    the document, then in edge order, so a graph always orders (and a run's
    event stream replays) the same way. Raises ``graphlib.CycleError``."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for node in nodes:
        sorter.add(node)
    for edge in edges:
        sorter.add(edge["to"], edge["from"])
    sorter.prepare()
    # One node at a time, first ready first done: the order of the sorter's
    # batches alone would interleave differently on wide graphs.
    ready: deque[str] = deque(sorter.get_ready())
    order = []
    while ready:
        current = ready.popleft()
        order.append(current)
        sorter.done(current)
        ready.extend(sorter.get_ready())
    return order


def _compensation_nodes(nodes: dict[str, dict]) -> dict[str, dict]:
    """A node's compensation is a step of its own, outside the edges: the
    saga schedules it, never Advance."""
    undo_nodes = {}
    for node in nodes.values():
        # A disabled node made no effect, so there is nothing to undo.
        spec = None if node.get("disabled") else node.get("compensation")
        if not spec:
            continue
        if spec.get("default"):
            # The connector's own undo, on the node's own config.
            undo = {"type": node["type"], "config": node.get("config", {}), "connector_undo": True}
        else:
            undo = {"type": spec["type"], "config": spec.get("config", {})}
        node_id = undo_of(node["id"])
        undo_nodes[node_id] = {"id": node_id, **undo, "retry": spec["retry"]}
    return undo_nodes


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
    # The flow's business key rendered from the trigger (an order id, a
    # customer): how people find this run; "" when the flow declares none.
    business_key: str = ""
    # The published version whose graph the run follows: the one it started
    # on, or the one a ``run.migrated`` moved it to (0 for a test run).
    version_number: int = 0
    # The flow's last successful run before this one started ({"run_id",
    # "output", "finished_at"}), as the driver found it and recorded it in
    # ``run.started``; expressions read it as ``last_success``. None when
    # there was none, or the graph does not read it.
    last_success: dict | None = None


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
    business_key: str = ""
    # The flow's last successful run, found by the driver (not here: the
    # decider reads nothing) and recorded so a replay of the log agrees.
    last_success: dict | None = None
    # A test run of the draft: the hash of its pinned snapshot ("" otherwise).
    test_snapshot: str = ""


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
    # The node is disabled: the driver passed its input through, no call.
    disabled: bool = False


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
class Migrate:
    """Move a live run whose step ``node`` is dead-lettered onto another
    published version of its flow (the fix an operator just shipped), so
    that the step is replayed there. Decided with the new version's graph;
    ``previous`` is the graph the run has followed so far."""

    node: str
    from_version: int
    to_version: int
    previous: "Graph"
    actor: str = ""


@dataclass(frozen=True)
class Discard:
    node: str
    reason: str


@dataclass(frozen=True)
class Cancel:
    reason: str


Command = (
    Start
    | Release
    | Advance
    | Claim
    | Complete
    | CompleteIteration
    | Wait
    | Hold
    | Fail
    | Signal
    | GiveUp
    | FireTimer
    | ExpireLease
    | ExtendLease
    | Replay
    | Migrate
    | Discard
    | Cancel
)
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


def decide(state: RunState, command: Command, graph: Graph) -> list[Event]:
    """The events ``command`` makes happen to the run in ``state``; raises
    ``IllegalTransition`` or ``StaleCommand`` when it makes none."""
    handler = DECIDERS.get(type(command))
    if handler is None:
        raise IllegalTransition(f"unknown command {command!r}")
    return handler(state, command, graph)


def _start(state: RunState, cmd: Start, graph: Graph) -> list[Event]:
    if not run_may(state, "run.started"):
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
    # Recorded only when there is one (older runs' events lack them).
    optional = {"concurrency_key": cmd.concurrency_key, "business_key": cmd.business_key,
                "test_snapshot": cmd.test_snapshot, "last_success": cmd.last_success}  # fmt: skip
    payload.update({name: value for name, value in optional.items() if value})
    events: list[Event] = [("run.started", payload)]
    if cmd.queued:
        if not cmd.concurrency_key:
            raise IllegalTransition("only a run with a concurrency key can be queued")
        events.append(("run.queued", {"reason": QUEUED_CONCURRENCY, "key": cmd.concurrency_key}))
    return events


def _release(state: RunState, cmd: Release, graph: Graph) -> list[Event]:
    if state.wait_reason != QUEUED_CONCURRENCY or not run_may(state, "run.released"):
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
    state = _fold_in(state, events, _ready_or_dead, graph)
    state = _fold_in(state, events, _loser_to_cancel, graph)
    if all(s.status in (SUCCEEDED, SKIPPED, CANCELLED) for s in state.steps.values()):
        outputs = {
            node: s.output
            for node, s in state.steps.items()
            if s.status == SUCCEEDED and not _has_live_successor(node, state, graph)
        }
        events.append(("run.succeeded", {"output": outputs}))
    return events


def _fold_in(
    state: RunState,
    events: list[Event],
    next_event: Callable[[RunState, Graph], Event | None],
    graph: Graph,
) -> RunState:
    """Ask ``next_event`` again after each event it gives, folded in, so
    each answer sees the ones before it (a skip, the nodes after it)."""
    while (event := next_event(state, graph)) is not None:
        events.append(event)
        state = evolve(state, event)
    return state


def _ready_or_dead(state: RunState, graph: Graph) -> Event | None:
    """The first pending step, in graph order, whose inputs have arrived (it
    is scheduled) or whose every input is dead (it is skipped)."""
    for node in graph.order:
        if state.steps[node].status != PENDING:
            continue
        edges = graph.incoming[node]
        states = [_edge_state(state, edge) for edge in edges]
        # A first-wins merge fires on the first live branch; any other
        # node (and an all-branches merge) waits until no edge is open.
        first_wins = graph.merge_mode(node)[0] == "first" and "live" in states
        if "open" in states and not first_wins:
            continue
        if not edges or "live" in states:
            return ("step.scheduled", {"node": node, "attempt": 1, "revision": 0})
        return ("step.skipped", {"node": node})
    return None


def _loser_to_cancel(state: RunState, graph: Graph) -> Event | None:
    """Once a first-wins merge that cancels has fired, every step of a losing
    branch that is idle now (including one that failed or began a retry
    after the merge fired) is cancelled: here the first of them."""
    for merge, losers in graph.losers.items():
        if graph.merge_mode(merge) != ("first", "cancel"):
            continue
        if state.steps[merge].status in (PENDING, SKIPPED, CANCELLED):
            continue
        for loser in _cancellable(state, losers):
            return ("step.cancelled", {"node": loser, "reason": f"{merge} fired"})
    return None


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
    if cmd.disabled:
        payload["disabled"] = True
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
    failed: Event = ("step.attempt_failed", {
        "node": cmd.node, "attempt": cmd.attempt, "error": cmd.error,
        "retryable": cmd.retryable, "may_have_been_sent": cmd.may_have_been_sent,
    })  # fmt: skip
    if cmd.may_have_been_sent and not cmd.safe_to_rerun:
        # The remote may have acted, and this step cannot be repeated without
        # repeating its effect: a person checks, as after a crash mid-call.
        return [failed, _outcome_unknown(cmd.node, cmd.attempt, cmd.error)]
    policy = graph.retry_policy(cmd.node)
    if cmd.retryable and cmd.attempt < policy["max_attempts"]:
        return [failed, _retry(cmd, policy)]
    reason = "retries exhausted" if cmd.retryable else "not retryable"
    if graph.nodes[cmd.node].get("on_failure") == "fail_run":
        return [failed, *_fail_run(state, cmd, reason, graph)]
    return [failed, _dead_letter(cmd, reason)]


def _retry(cmd: Fail, policy: dict) -> Event:
    delay = backoff_seconds(policy, cmd.attempt, cmd.jitter_sample)
    if cmd.retry_after is not None:
        delay = max(delay, min(cmd.retry_after, policy["max_seconds"]))
    due = cmd.now + dt.timedelta(seconds=delay)
    return ("step.retry_scheduled", {"node": cmd.node, "attempt": cmd.attempt + 1,
                                     "due_at": _iso(due)})  # fmt: skip


def _fail_run(state: RunState, cmd: Fail, reason: str, graph: Graph) -> list[Event]:
    """A failure the flow expects (stock gone, card declined): the run fails
    at once and compensates what ran, without waiting for a person."""
    error = f"step {cmd.node} failed ({reason}): {cmd.error}"
    failed: Event = ("step.failed", {"node": cmd.node, "attempt": cmd.attempt,
                                     "error": cmd.error, "reason": reason})  # fmt: skip
    if _compensable_steps(state, graph):
        return [failed, ("run.compensating", {"reason": error})]
    return [failed, ("run.failed", {"error": error})]


def _dead_letter(cmd: Fail, reason: str) -> Event:
    return ("step.dead_lettered", {
        "node": cmd.node, "attempt": cmd.attempt, "error": cmd.error, "reason": reason,
        "outcome_unknown": False,
        # An undo that cannot complete leaves an effect in place.
        "severity": "critical" if base_node(cmd.node)[1] == "undo" else "error",
    })  # fmt: skip


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


def touched_nodes(state: RunState) -> list[str]:
    """The nodes a run has done something with: every step not pending (a
    finished, skipped, waiting, running or dead-lettered one)."""
    return [node for node, step in state.steps.items() if step.status != PENDING]


def migration_problems(state: RunState, previous: Graph, graph: Graph) -> list[tuple[str, str]]:
    """Why the run in ``state``, which followed ``previous``, cannot follow
    ``graph`` from here on: [(node, why)], empty when it can. Every node the
    run has touched must be in ``graph`` with the same id and the same ports
    (its recorded port must still lead somewhere), and every node that feeds
    one of them there must be one the run has touched too (a new node before
    a step that already ran would run after it). A dead letter replayed
    before with an edited input cannot move: its edit would run, not the
    new version's config."""
    touched = touched_nodes(state)
    done = set(touched)
    problems: list[tuple[str, str]] = []
    for node in touched:
        if node not in graph.nodes:
            problems.append((node, "is not in the new version"))
            continue
        old = previous.facts[node].ports if node in previous.facts else ()
        new = graph.facts[node].ports
        if tuple(old) != tuple(new):
            problems.append((node, f"has other ports ({', '.join(old) or 'none'} before, "
                                   f"{', '.join(new) or 'none'} now)"))  # fmt: skip
            continue
        if state.steps[node].status == DEAD_LETTERED and state.steps[node].revision > 0:
            # An edited input replaces the node's config on a replay: the
            # edit, not the new version's config, would run.
            problems.append((node, "was replayed with an edited input, which would run "
                                   "instead of the new version's config"))  # fmt: skip
            continue
        if base_node(node)[1] == "do":
            feeders = sorted({e["from"] for e in graph.incoming.get(node, [])} - done)
            if feeders:
                problems.append((node, f"comes after {', '.join(feeders)} in the new version, "
                                       "which this run never ran"))  # fmt: skip
    return problems


def _migrate(state: RunState, cmd: Migrate, graph: Graph) -> list[Event]:
    _live(state)
    if state.status == RUN_COMPENSATING:
        raise IllegalTransition(f"run {state.run_id} is compensating; it stays on its version")
    if state.version_number != cmd.from_version:
        raise StaleCommand(f"run {state.run_id} follows version {state.version_number}, "
                           f"not {cmd.from_version}")  # fmt: skip
    if cmd.to_version == cmd.from_version:
        raise IllegalTransition(f"run {state.run_id} already follows version {cmd.to_version}")
    step = _step(state, cmd.node)
    if step.status != DEAD_LETTERED or base_node(cmd.node)[1] != "do":
        raise IllegalTransition(f"step {cmd.node} is {step.status}, not a dead-lettered step")
    problems = migration_problems(state, cmd.previous, graph)
    if problems:
        named = "; ".join(f"{node} {why}" for node, why in problems)
        raise MigrationRefused(
            f"run {state.run_id} cannot move to version {cmd.to_version}: {named}", problems
        )
    touched = touched_nodes(state)
    payload = {
        "from_version": cmd.from_version,
        "to_version": cmd.to_version,
        "node": cmd.node,
        "checked": touched,
        "nodes": graph.order,
        "added": [n for n in graph.order if n not in state.steps],
        "dropped": [n for n in state.steps if n not in graph.nodes],
        "actor": cmd.actor,
    }
    return [("run.migrated", payload)]


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


# One handler per command type; each takes (state, that command, graph).
DECIDERS: dict[type, Callable[[RunState, Any, Graph], list[Event]]] = {
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
    Migrate: _migrate,
    Discard: _discard,
    Cancel: _cancel,
}


# --- evolve -----------------------------------------------------------------


def evolve(state: RunState, event: Event, at: dt.datetime | None = None) -> RunState:
    """The state after ``event``. ``at`` is the event's time (for timestamps)."""
    kind, payload = event
    if not kind.startswith(("run.", "step.")):
        # Other facts recorded on a run's stream (an approval's claim, a
        # comment) belong to other projections; the run's state ignores them.
        return state
    change = EVOLVERS.get(kind)
    if change is None:
        raise IllegalTransition(f"unknown event type {kind}")
    # Copy on write: a new run state and steps dict; only the steps an event
    # touches are copied. Earlier states stay valid (the decider relies on it).
    after = dataclasses.replace(state, steps=dict(state.steps))
    change(after, payload, at)
    if _run_facts(after) != _run_facts(state):
        after.updated_at = at
    return after


def _run_facts(state: RunState) -> tuple:
    return (state.status, state.input, state.output, state.error, state.root_run_id,
            state.finished_at, state.concurrency_key, state.wait_reason,
            state.version_number)  # fmt: skip


def _move(step: StepState, to: str) -> None:
    """The one check of a step's move: ``STEP_TRANSITIONS``."""
    if to not in STEP_TRANSITIONS[step.status]:
        raise IllegalTransition(f"step {step.node} cannot go from {step.status} to {to}")
    step.status = to


def _move_run(state: RunState, kind: str) -> None:
    """The one check of a run's move: ``RUN_TRANSITIONS``."""
    if not run_may(state, kind):
        raise IllegalTransition(f"run {state.run_id} is {state.status}; {kind} cannot happen")
    state.status = RUN_TRANSITIONS[kind][1]


def run_may(state: RunState, kind: str) -> bool:
    """Whether the run event ``kind`` may happen to the run now."""
    return state.status in RUN_TRANSITIONS[kind][0]


def _changed_step(state: RunState, node: str) -> StepState:
    """A copy of the step, put in the (already copied) state to be changed."""
    step = state.steps[node] = copy.copy(_step(state, node))
    return step


# Run events: each changes the run state in place (a copy evolve made).
RunEvolver = Callable[[RunState, dict, dt.datetime | None], None]


def _run_started(state: RunState, payload: dict, at: dt.datetime | None) -> None:
    _move_run(state, "run.started")
    state.input = payload["input"]
    state.root_run_id = payload["root_run_id"]
    state.lineage_id = payload.get("lineage_id")
    state.steps = {node: StepState(node=node) for node in payload["nodes"]}
    for node, done in (payload.get("carried") or {}).items():
        state.steps[node] = StepState(
            node=node, status=SUCCEEDED, output=done["output"], port=done["port"], finished_at=at
        )
    state.started_at = at
    state.concurrency_key = payload.get("concurrency_key", "")
    state.business_key = payload.get("business_key", "")
    state.version_number = payload.get("version", 0)
    state.last_success = payload.get("last_success")


def _run_migrated(state: RunState, payload: dict, at: dt.datetime | None) -> None:
    """The run follows another version's graph from here: its steps are that
    graph's nodes (new ones pending); a pending step whose node is gone is
    dropped. Steps the run touched stay as they are (the decision checked
    that each is in the new graph)."""
    if state.status not in (RUN_RUNNING, RUN_WAITING):
        raise IllegalTransition(f"run {state.run_id} is {state.status}; it cannot move")
    nodes = payload["nodes"]
    wanted = set(nodes)
    kept = {n: s for n, s in state.steps.items() if n in wanted or s.status != PENDING}
    state.steps = {**kept, **{n: StepState(node=n) for n in nodes if n not in kept}}
    state.version_number = payload["to_version"]


def _run_queued(state: RunState, payload: dict, at: dt.datetime | None) -> None:
    if any(s.status not in (PENDING, SUCCEEDED) for s in state.steps.values()):
        raise IllegalTransition(f"run {state.run_id} has begun; it cannot queue")
    _move_run(state, "run.queued")
    state.wait_reason = payload["reason"]


def _run_released(state: RunState, payload: dict, at: dt.datetime | None) -> None:
    if state.wait_reason != QUEUED_CONCURRENCY:
        raise IllegalTransition(f"run {state.run_id} is not queued")
    _move_run(state, "run.released")
    state.wait_reason = ""


def _run_compensating(state: RunState, payload: dict, at: dt.datetime | None) -> None:
    _move_run(state, "run.compensating")
    state.error = payload["reason"]
    _cancel_idle_steps(state)


def _run_finished(state: RunState, payload: dict, at: dt.datetime | None, kind: str) -> None:
    _move_run(state, kind)
    state.output = payload.get("output")
    state.error = payload.get("error") or payload.get("reason") or ""
    state.finished_at = at
    state.wait_reason = ""
    if kind == "run.cancelled":
        _cancel_idle_steps(state)


def _cancel_idle_steps(state: RunState) -> None:
    """A run that stops or turns to undo cancels the steps not mid-call."""
    for node, step in state.steps.items():
        if step.status in (PENDING, SCHEDULED, WAITING, RETRYING):
            state.steps[node] = cancelled = dataclasses.replace(step, due_at=None)
            _move(cancelled, CANCELLED)


def _compensation_scheduled(state: RunState, payload: dict, at: dt.datetime | None) -> None:
    _move(_changed_step(state, payload["for"]), COMPENSATING)
    state.steps[payload["node"]] = StepState(
        node=payload["node"], status=SCHEDULED, attempt=1, scheduled_at=at
    )


# Step events: each changes a copy of its step; the run's status follows.
StepEvolver = Callable[[StepState, dict, dt.datetime | None], None]


def _step_scheduled(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    # Which event may end a wait is the event's business, not the table's:
    # only a hold's timer schedules a waiting step again.
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


def _step_skipped(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    _move(step, SKIPPED)
    step.finished_at = at


def _step_cancelled(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    _move(step, CANCELLED)
    step.due_at = None
    step.wait_reason = ""
    step.finished_at = at


def _step_iteration_succeeded(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    step.iterations = {**step.iterations, str(payload["index"]): payload["output"]}


def _step_started(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    _move(step, RUNNING)
    step.input = payload["input"]
    step.idempotency_key = payload["idempotency_key"]
    step.lease_until = _parse(payload["lease_until"])
    step.started_at = at
    step.error = ""


def _step_lease_extended(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    step.lease_until = _parse(payload["lease_until"])


def _step_succeeded(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    _move(step, SUCCEEDED)
    step.output = payload["output"]
    step.port = payload["port"]
    step.lease_until = None
    step.due_at = None
    step.wait_reason = ""
    step.finished_at = at


def _step_held(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    # The table lets a running step wait too; a hold comes before the call.
    if step.status != SCHEDULED or payload["attempt"] != step.attempt:
        raise IllegalTransition(f"step {step.node} is {step.status}; only a scheduled step is held")
    _move(step, WAITING)
    step.due_at = _parse(payload["due_at"])
    step.wait_reason = payload["reason"]
    step.wait_target = payload.get("target", "")


def _step_waiting(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    # The table lets a scheduled step wait too (a hold); this wait is a call's.
    if step.status != RUNNING:
        raise IllegalTransition(f"step {step.node} is {step.status}, not running")
    _move(step, WAITING)
    step.due_at = _parse(payload["due_at"])
    step.wait_reason = payload["reason"]
    step.output = payload.get("output")
    step.port = payload.get("port", "out")
    step.lease_until = None


def _step_attempt_failed(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    step.error = payload["error"]
    failure = {"attempt": payload["attempt"], "error": payload["error"], "at": _iso(at)}
    step.errors = [*step.errors, failure]


def _step_retry_scheduled(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    _move(step, RETRYING)
    step.attempt = payload["attempt"]
    step.due_at = _parse(payload["due_at"])
    step.wait_reason = "retry"
    step.lease_until = None


def _step_dead_lettered(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    _move(step, DEAD_LETTERED)
    step.error = payload["error"]
    step.outcome_unknown = payload["outcome_unknown"]
    step.lease_until = None


def _step_lease_expired(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    expiry = {"attempt": payload["attempt"], "error": "lease expired", "at": _iso(at)}
    step.errors = [*step.errors, expiry]


def _step_replayed(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    if "edited_input" in payload:
        step.input = payload["edited_input"]
        # A new revision is a new set of effects (new keys): a loop starts
        # its iterations over.
        step.iterations = {}
    step.outcome_unknown = False


def _step_discarded(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    _move(step, FAILED)
    step.finished_at = at


def _step_failed(step: StepState, payload: dict, at: dt.datetime | None) -> None:
    _move(step, FAILED)
    step.error = payload["error"]
    step.lease_until = None
    step.finished_at = at


STEP_EVOLVERS: dict[str, StepEvolver] = {
    "step.scheduled": _step_scheduled,
    "step.skipped": _step_skipped,
    "step.cancelled": _step_cancelled,
    "step.iteration_succeeded": _step_iteration_succeeded,
    "step.started": _step_started,
    "step.lease_extended": _step_lease_extended,
    "step.succeeded": _step_succeeded,
    "step.held": _step_held,
    "step.waiting": _step_waiting,
    "step.attempt_failed": _step_attempt_failed,
    "step.retry_scheduled": _step_retry_scheduled,
    "step.dead_lettered": _step_dead_lettered,
    "step.lease_expired": _step_lease_expired,
    "step.replayed": _step_replayed,
    "step.discarded": _step_discarded,
    "step.failed": _step_failed,
}

# What an undo step's end means for the step it undoes.
UNDO_SETTLES = {"step.succeeded": COMPENSATED, "step.discarded": FAILED}


def _on_step(kind: str, change: StepEvolver) -> RunEvolver:
    """A step event as a run evolver: the undo's end settles its original,
    the step changes, and the run's status is derived again."""

    def evolve_step(state: RunState, payload: dict, at: dt.datetime | None) -> None:
        step = _changed_step(state, payload["node"])
        node, phase = base_node(step.node)
        if phase == "undo" and kind in UNDO_SETTLES:
            original = _changed_step(state, node)
            _move(original, UNDO_SETTLES[kind])
            original.finished_at = at
        change(step, payload, at)
        state.status = _derived_run_status(state)

    return evolve_step


def _finishing(kind: str) -> RunEvolver:
    return lambda state, payload, at: _run_finished(state, payload, at, kind)


# One handler per event type; an unknown type is refused.
EVOLVERS: dict[str, RunEvolver] = {
    "run.started": _run_started,
    "run.queued": _run_queued,
    "run.released": _run_released,
    "run.compensating": _run_compensating,
    "run.migrated": _run_migrated,
    **{kind: _finishing(kind) for kind in RUN_FINISHES},
    "step.compensation_scheduled": _compensation_scheduled,
    **{kind: _on_step(kind, change) for kind, change in STEP_EVOLVERS.items()},
}


def _derived_run_status(state: RunState) -> str:
    if state.status not in (RUN_RUNNING, RUN_WAITING):
        return state.status  # compensating stays so until the saga ends
    busy = any(s.status in (SCHEDULED, RUNNING) for s in state.steps.values())
    parked = any(s.status in (WAITING, RETRYING, DEAD_LETTERED) for s in state.steps.values())
    return RUN_WAITING if parked and not busy else RUN_RUNNING
