"""Rendering a step's config and performing its connector: what a step
reads (the trigger and the outputs before it), what it is given, and what
its outcome means to the decider. No transaction is opened here."""

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from connectors import base as connectors
from runs import decider, expressions
from runs.decider import Graph, RunState
from runs.graph_facts import connector_of

log = logging.getLogger(__name__)


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
        # The flow's last successful run before this one ({"run_id", "output",
        # "finished_at"}), or None: e.g. a sync's watermark,
        # ``{{ last_success.output.mark.since }}``.
        "last_success": state.last_success,
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


def context_of(
    state: RunState, graph: Graph, node: str, attempt: int, config, now,
    record: Callable[[dict[int, Any]], None],
) -> connectors.Context:  # fmt: skip
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
