"""The move of a run to another version, in the pure decider alone (no
database): what it checks, the ``run.migrated`` event it makes, and what
that event means to the run's state."""

import datetime as dt

import pytest

from flows.graph import validate
from runs import decider
from runs.decider import Graph, RunState
from runs.graph_facts import build_graph
from tests.engine_helpers import chain, transform

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
CALL = {"id": "call", "type": "http.request", "config": {"url": "http://127.0.0.1:1/x"}}


def graph(*nodes: dict) -> Graph:
    return build_graph(validate(chain(*nodes)))


def run(state: RunState, command, g: Graph) -> RunState:
    for event in decider.decide(state, command, g):
        state = decider.evolve(state, event, at=NOW)
    return state


def dead_lettered(g: Graph) -> RunState:
    """A run of version 1 whose ``call`` step is a dead letter."""
    state = run(RunState(run_id=1), decider.Start(input={}, root_run_id=1, flow_id=1, version=1),
                g)  # fmt: skip
    state = run(state, decider.Advance(), g)
    while any(s.status == decider.SCHEDULED and g.inline(s.node) for s in state.steps.values()):
        ready = next(s for s in state.steps.values() if s.status == decider.SCHEDULED)
        state = run(state, decider.Claim(node=ready.node, attempt=1, input={}, lease_until=NOW), g)
        state = run(state, decider.Complete(node=ready.node, attempt=1, output={}, port="out"), g)
        state = run(state, decider.Advance(), g)
    state = run(state, decider.Claim(node="call", attempt=1, input={}, lease_until=NOW), g)
    state = run(state, decider.Fail(node="call", attempt=1, error="400", retryable=False, now=NOW,
                                    jitter_sample=0.5, may_have_been_sent=False), g)  # fmt: skip
    assert state.steps["call"].status == decider.DEAD_LETTERED
    return state


def migrate(state: RunState, previous: Graph, new: Graph, node="call", to=2):
    command = decider.Migrate(node=node, from_version=state.version_number, to_version=to,
                              previous=previous, actor="user:olga")  # fmt: skip
    return decider.decide(state, command, new)


def test_a_move_names_what_it_checked_added_and_dropped_and_the_state_follows():
    old = graph(transform("prep", a=1), CALL, transform("note", b=1))
    new = graph(transform("prep", a=2), {**CALL, "config": {"url": "http://127.0.0.1:1/y"}},
                transform("receipt", c=1))  # fmt: skip
    state = dead_lettered(old)
    assert state.version_number == 1
    [(kind, payload)] = migrate(state, old, new)
    assert kind == "run.migrated"
    assert payload == {"from_version": 1, "to_version": 2, "node": "call",
                       "checked": ["start", "prep", "call"],
                       "nodes": ["start", "prep", "call", "receipt"], "added": ["receipt"],
                       "dropped": ["note"], "actor": "user:olga"}  # fmt: skip
    after = decider.evolve(state, (kind, payload), at=NOW)
    assert after.version_number == 2 and after.updated_at == NOW
    assert list(after.steps) == ["start", "prep", "call", "receipt"]
    assert after.steps["receipt"].status == decider.PENDING
    assert after.steps["call"] == state.steps["call"]  # untouched: it is replayed next
    # Then the replay runs on the new graph and the new node follows it.
    after = run(after, decider.Replay(node="call"), new)
    after = run(after, decider.Claim(node="call", attempt=2, input={}, lease_until=NOW), new)
    after = run(after, decider.Complete(node="call", attempt=2, output={}, port="out"), new)
    after = run(after, decider.Advance(), new)
    assert after.steps["receipt"].status == decider.SCHEDULED


def test_a_step_that_ran_and_is_gone_or_has_other_ports_is_named():
    old = graph(transform("prep", a=1), CALL)
    state = dead_lettered(old)
    gone = graph({**CALL})
    branch = {"id": "prep", "type": "branch", "config": {"condition": True}}
    document = chain(branch)
    document["nodes"].append(CALL)
    document["edges"].append({"from": "prep", "from_port": "true", "to": "call"})
    ported = build_graph(validate(document))
    with pytest.raises(decider.MigrationRefused) as refused:
        migrate(state, old, gone)
    assert refused.value.problems == [("prep", "is not in the new version")]
    assert decider.migration_problems(state, old, ported) == [
        ("prep", "has other ports (out before, true, false now)")]  # fmt: skip


def test_a_new_node_before_a_step_that_ran_is_named():
    old = graph(CALL)
    state = dead_lettered(old)
    new = graph(transform("check", a=1), CALL)
    assert decider.migration_problems(state, old, new) == [
        ("call", "comes after check in the new version, which this run never ran")]  # fmt: skip


def test_only_a_dead_letter_of_a_live_run_moves_and_not_onto_its_own_version():
    old = graph(transform("prep", a=1), CALL)
    new = graph(transform("prep", a=1), CALL, transform("after", b=1))
    state = dead_lettered(old)
    with pytest.raises(decider.IllegalTransition, match="not a dead-lettered step"):
        migrate(state, old, new, node="prep")
    with pytest.raises(decider.IllegalTransition, match="already follows version 1"):
        migrate(state, old, new, to=1)
    with pytest.raises(decider.StaleCommand):
        decider.decide(state, decider.Migrate(node="call", from_version=3, to_version=4,
                                              previous=old), new)  # fmt: skip
    cancelled = run(state, decider.Cancel(reason="no"), old)
    with pytest.raises(decider.IllegalTransition):
        migrate(cancelled, old, new)
    # And a stray event cannot move a finished run either.
    event = ("run.migrated", {"from_version": 1, "to_version": 2, "nodes": new.order})
    with pytest.raises(decider.IllegalTransition):
        decider.evolve(cancelled, event)


def test_a_dead_letter_whose_input_was_edited_does_not_move():
    """Its edited input would run instead of the new version's config."""
    old = graph(CALL)
    state = dead_lettered(old)
    state = run(state, decider.Replay(node="call", edited_input={"url": "x"}, edited=True), old)
    state = run(state, decider.Claim(node="call", attempt=2, input={}, lease_until=NOW), old)
    state = run(state, decider.Fail(node="call", attempt=2, error="400", retryable=False, now=NOW,
                                    jitter_sample=0.5, may_have_been_sent=False), old)  # fmt: skip
    assert (state.steps["call"].status, state.steps["call"].revision) == ("dead_lettered", 1)
    with pytest.raises(decider.MigrationRefused) as refused:
        migrate(state, old, graph(CALL, transform("after", b=1)))
    assert refused.value.problems == [
        (
            "call",
            "was replayed with an edited input, which would "
            "run instead of the new version's config",
        )
    ]
