"""The engine's services: every change to a run that a page, the API, a
trigger, an approval or the sweep asks for. Each is one ``run_session``."""

import datetime as dt
import json
import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from flows.models import FlowVersion
from runs import decider
from runs.concurrency import StartRefused, business_key, concurrency_key, lock_key, queue_ahead
from runs.decider import StepState
from runs.graph_facts import connector_of
from runs.ground import clock
from runs.models import Run, Step, Timer
from runs.perform import safe_to_rerun
from runs.session import Session, graph_of, run_session, snapshot_graph

log = logging.getLogger(__name__)

__all__ = ["StartRefused"]


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
        try:
            # Published versions are immutable: after the first run of one,
            # its graph comes from this process's cache, without a query.
            graph = graph_of(flow.pk, number)
        except FlowVersion.DoesNotExist:
            raise StartRefused(f"“{flow.name}” has no version {number}.") from None
        key = concurrency_key(graph, input)
    business = business_key(graph, input)
    last = last_success_of(flow.pk, graph)
    now = clock.now()
    try:
        # A savepoint only where this function recovers from the failure (a
        # sub-flow's racing start); any other failure fails a caller's open
        # transaction with it (a trigger's, which records the delivery with
        # the run), and two round trips per start are saved.
        with transaction.atomic(savepoint=bool(parent)):
            if key:
                lock_key(flow.pk, key)
            run = _create_and_start(
                flow=flow, number=number, input=input, actor=actor, now=now,
                replay_of=replay_of, mode=mode, root_run_id=root_run_id, carried=carried,
                parent=parent, key=key, extra_events=extra_events, lineage_id=lineage_id,
                business_key=business,
                test_snapshot=test_snapshot, last_success=last,
            )  # fmt: skip
    except IntegrityError:
        # Two attempts of one parent step raced to start its child: the
        # unique parent key let one through; return that one.
        if not parent:
            raise
        return Run.objects.get(parent_key=parent["key"])
    # No reload: the start's session wrote the run's row from this very
    # object (runs/rows.py sets what it writes), and ``run.state`` holds
    # what the start committed (the outputs of the steps it ran inline).
    return run


def _create_and_start(
    *, flow, number: int, input: Any, actor: str, now, replay_of, mode, root_run_id, carried,
    parent: dict | None, key: str, extra_events: list | None, lineage_id: int | None = None,
    business_key: str = "",
    test_snapshot: str = "", last_success: dict | None = None,
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
    with run_session(run.pk, actor=actor, now=now, savepoint=False, new_run=run) as session:
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
                queued=bool(key) and queue_ahead(flow.pk, key, run.pk),
                business_key=business_key,
                test_snapshot=test_snapshot,
                last_success=last_success,
            )
        )
        session.record(extra_events)
    run.state = session.state
    return run


def reads_last_success(graph) -> bool:
    """Whether any node's config names ``last_success``."""
    return any(
        "last_success" in json.dumps(node.get("config"), default=str)
        for node in graph.nodes.values()
    )


def last_success_of(flow_id: int, graph) -> dict | None:
    """The expression variable ``last_success``: the flow's newest
    succeeded production run ({"run_id", "output", "finished_at"}), found
    once, at start, and recorded in ``run.started`` (the decider stays pure
    and a rebuild from the log agrees). None when the graph never reads it
    (nothing is looked up or recorded) or no run has succeeded yet."""
    if not reads_last_success(graph):
        return None
    last = (
        Run.objects.filter(flow_id=flow_id, status=decider.RUN_SUCCEEDED, is_test=False)
        .order_by("-finished_at", "-id")
        .values("id", "output", "finished_at")
        .first()
    )
    if last is None:
        return None
    finished = last["finished_at"]
    return {"run_id": last["id"], "output": last["output"],
            "finished_at": finished.isoformat() if finished else None}  # fmt: skip


# --- concurrency keys ----------------------------------------------------------


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
        session.record(extra_events, first=True)


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
        session.record(extra_events, first=True)


def cancel_run(run_id: int, *, actor: str, reason: str) -> None:
    with run_session(run_id, actor=actor) as session:
        session.apply(decider.Cancel(reason=reason))


# --- loops and sub-flows ---------------------------------------------------------
