"""Replay a dead letter in place on the flow's newest published version:
the fix an operator just shipped (Camunda calls it instance migration).

Unlike a replay as a new run (``services.replay_run``), the run itself goes
on: its finished steps stand, its keys stay, and its dead-lettered step is
replayed with the new version's graph. It is allowed only when every node
the run has touched is in the new version with the same id and the same
ports (``decider.migration_problems``); otherwise it is refused naming the
offending nodes, and nothing is written.

The move is a ``run.migrated`` event on the run's stream, appended before
the step's ``step.replayed`` in the same commit; the run's version (and so
its graph, for the driver and for a rebuild) is derived from it.
"""

from dataclasses import dataclass, field
from typing import Any

import pydantic

from connectors import base as connectors
from flows.models import Flow
from runs import decider
from runs.decider import MigrationRefused
from runs.graph_facts import connector_of
from runs.models import Run
from runs.perform import render_config
from runs.session import graph_for, graph_of, load_state, run_session

__all__ = ["MigrationRefused", "Plan", "plan", "replay_on_newest", "replay_many_on_newest"]


@dataclass
class Plan:
    """What replaying ``node`` of a run on the newest version would do, or
    why it cannot: read before the operator confirms."""

    run_id: int
    node: str
    from_version: int
    to_version: int
    refusal: str = ""  # a sentence; "" when the move is allowed
    problems: list[tuple[str, str]] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    connector: str = ""  # the node's connector in the new version
    side_effect: str = "none"
    target: str = ""
    idempotency_key: str = ""

    @property
    def allowed(self) -> bool:
        return not self.refusal

    @property
    def calls_out(self) -> bool:
        return self.side_effect != str(connectors.SideEffect.NONE)

    @property
    def offending(self) -> str:
        return ", ".join(node for node, _ in self.problems)


def _newest(flow_id: int) -> int:
    number = Flow.objects.filter(pk=flow_id).values_list("published_version", flat=True).first()
    return number or 0


def _up_front_refusal(run: Run, newest: int) -> str:
    if run.test_snapshot:
        return (f"Run {run.pk} is a test run of a draft snapshot: it cannot move to a "
                "published version.")  # fmt: skip
    if not newest:
        return f"The flow of run {run.pk} has no published version."
    if newest == run.version_number:
        return (f"Run {run.pk} already follows version {newest}, the newest: replay it on "
                "its own version.")  # fmt: skip
    return ""


def _refusal(exc: decider.IllegalTransition, run_id: int, to_version: int) -> str:
    if isinstance(exc, MigrationRefused) and exc.problems:
        named = "; ".join(f"{node} {why}" for node, why in exc.problems)
        return f"Run {run_id} cannot move to version {to_version}: {named}."
    return f"Run {run_id} cannot move to version {to_version}: {exc}."


def plan(run: Run, node: str) -> Plan:
    """The check the decider makes, made ahead on the run's rows, with what
    the step will call in the new version (connector, target, key)."""
    newest = _newest(run.flow_id)
    result = Plan(run_id=run.pk, node=node, from_version=run.version_number, to_version=newest)
    result.refusal = _up_front_refusal(run, newest)
    if result.refusal:
        return result
    state = load_state(run)
    previous, graph = graph_for(run), graph_of(run.flow_id, newest)
    step = state.steps.get(node)
    if step is None or step.status != decider.DEAD_LETTERED:
        result.refusal = f"Step {node} of run {run.pk} is not a dead letter (any more)."
        return result
    result.problems = decider.migration_problems(state, previous, graph)
    if result.problems:
        result.refusal = _refusal(MigrationRefused("", result.problems), run.pk, newest)
        return result
    result.checked = decider.touched_nodes(state)
    result.added = [n for n in graph.order if n not in state.steps]
    result.dropped = [n for n in state.steps if n not in graph.nodes]
    base, phase = decider.base_node(node)
    result.idempotency_key = step.idempotency_key or decider.idempotency_key(
        root_run_id=state.root_run_id or run.pk, node=base, revision=step.revision, phase=phase
    )
    result.connector = graph.nodes[node]["type"]
    result.side_effect, result.target = _call_facts(graph, node, state)
    return result


def _call_facts(graph: decider.Graph, node: str, state: decider.RunState) -> tuple[str, str]:
    """The side-effect class and breaker target of the step's call in the
    new version, from its config rendered as the replay will render it."""
    try:
        connector = connector_of(graph, node)
    except (connectors.UnknownConnector, KeyError):
        return str(graph.facts[node].side_effect), ""
    config, error = render_config(graph, node, state)
    if error or not isinstance(config, pydantic.BaseModel):
        return str(connector.side_effect_class), ""
    return str(connector.side_effect(config)), connector.breaker_target(config) or ""


@dataclass
class Moved:
    run_id: int
    node: str
    from_version: int
    to_version: int
    checked: list[str]


def replay_on_newest(run_id: int, node: str, *, actor: str) -> Moved:
    """Move the run to its flow's newest version (``run.migrated``, recorded
    first) and replay its dead-lettered ``node`` there, in one commit; the
    driver follows the new version's graph from then on. Raises
    ``MigrationRefused`` (nothing written) when the run cannot move."""
    with run_session(run_id, actor=actor) as session:
        run = session.run
        newest = _newest(run.flow_id)
        refusal = _up_front_refusal(run, newest)
        if refusal:
            raise MigrationRefused(refusal)
        previous, graph = session.graph, graph_of(run.flow_id, newest)
        command = decider.Migrate(node=node, from_version=session.state.version_number,
                                  to_version=newest, previous=previous, actor=actor)  # fmt: skip
        session.graph = graph  # the move is decided with the graph it moves to
        try:
            [(_, payload)] = session.apply(command)
        except MigrationRefused as exc:
            raise MigrationRefused(_refusal(exc, run_id, newest), exc.problems) from None
        session.apply(decider.Replay(node=node))
    return Moved(run_id=run_id, node=node, from_version=payload["from_version"],
                 to_version=payload["to_version"], checked=payload["checked"])  # fmt: skip


@dataclass
class Outcome:
    moved: list[Moved] = field(default_factory=list)
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # run, node, why


def replay_many_on_newest(pairs: list[tuple[int, str]], *, actor: str) -> Outcome:
    """Each dead letter moved and replayed in a transaction of its own: a
    run that cannot move is reported by name and leaves the others be."""
    outcome = Outcome()
    for run_id, node in pairs:
        try:
            outcome.moved.append(replay_on_newest(run_id, node, actor=actor))
        except (decider.IllegalTransition, decider.StaleCommand, Run.DoesNotExist) as exc:
            outcome.refused.append((run_id, node, _sentence(exc, run_id)))
    return outcome


def _sentence(exc: Any, run_id: int) -> str:
    if isinstance(exc, Run.DoesNotExist):
        return f"Run {run_id} does not exist."
    text = str(exc)
    return text if text.endswith(".") else f"{text}."
