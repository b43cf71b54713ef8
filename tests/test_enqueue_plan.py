"""What a commit wakes up, decided from the states before and after it and
the graph alone: no database, no broker, no connector registry."""

import dataclasses
import datetime as dt

from runs import decider, wakeups
from runs.decider import Graph, NodeFacts, RunState, StepState
from runs.follow_ups import RunFacts, Send, plan

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
FLOW = RunFacts(flow_id=7)
CHILD = RunFacts(flow_id=7, has_parent=True)


def _facts(node: dict) -> NodeFacts:
    # "calc" nodes are pure (run inline); every other type calls out.
    return NodeFacts(inline=node["type"] == "calc")


GRAPH = Graph.from_document(
    {
        "nodes": [
            {"id": "start", "type": "webhook", "config": {}},
            {"id": "charge", "type": "http", "config": {}},
            {"id": "sum", "type": "calc", "config": {}},
            {"id": "off", "type": "http", "config": {}, "disabled": True},
            {"id": "child", "type": "subflow", "config": {}},
        ],
        "edges": [
            {"from": "start", "to": "charge"},
            {"from": "start", "to": "sum"},
            {"from": "start", "to": "off"},
            {"from": "start", "to": "child"},
        ],
    },
    _facts,
)


def state(status: str = decider.RUN_RUNNING, key: str = "", **steps: StepState) -> RunState:
    return RunState(run_id=5, status=status, concurrency_key=key, steps=dict(steps))


def step(node: str, status: str, attempt: int = 1, **fields) -> StepState:
    return StepState(node=node, status=status, attempt=attempt, **fields)


def tasks(sends: list[Send]) -> list[str]:
    return [send.task for send in sends]


def test_nothing_changed_wakes_nothing():
    same = state(charge=step("charge", decider.RUNNING))
    assert plan(same, same, GRAPH, run=FLOW, now=NOW) == []


def test_a_newly_scheduled_side_effecting_step_goes_to_a_worker_and_a_pure_one_does_not():
    before = state()
    after = state(
        charge=step("charge", decider.SCHEDULED),
        sum=step("sum", decider.SCHEDULED),
        off=step("off", decider.SCHEDULED),  # disabled: passes through inline
    )
    assert plan(before, after, GRAPH, run=FLOW, now=NOW) == [
        Send(wakeups.EXECUTE_STEP, (5, "charge", 1))
    ]


def test_a_retry_is_dispatched_once_per_attempt():
    first = state(charge=step("charge", decider.SCHEDULED, attempt=1))
    second = state(charge=step("charge", decider.SCHEDULED, attempt=2))
    assert tasks(plan(first, second, GRAPH, run=FLOW, now=NOW)) == [wakeups.EXECUTE_STEP]
    assert plan(second, second, GRAPH, run=FLOW, now=NOW) == []


def test_a_spent_inline_budget_sends_a_continuation():
    same = state()
    assert plan(same, same, GRAPH, run=FLOW, now=NOW, continuation=True) == [
        Send(wakeups.CONTINUE_RUN, (5,))
    ]


def test_a_short_wait_gets_a_countdown_and_a_long_one_waits_for_the_sweep():
    before = state(charge=step("charge", decider.RUNNING))
    soon = NOW + dt.timedelta(seconds=3)
    retrying = step("charge", decider.RETRYING, due_at=soon)
    assert plan(before, state(charge=retrying), GRAPH, run=FLOW, now=NOW) == [
        Send(wakeups.FIRE_TIMER, (5, "charge", 1, "retry"), 3.0)
    ]
    later = dataclasses.replace(retrying, due_at=NOW + dt.timedelta(seconds=60))
    assert plan(before, state(charge=later), GRAPH, run=FLOW, now=NOW) == []


def test_an_overdue_wait_fires_at_once_and_a_standing_one_is_not_sent_again():
    before = state(charge=step("charge", decider.RUNNING))
    waiting = step("charge", decider.WAITING, due_at=NOW - dt.timedelta(seconds=9),
                   wait_reason="approval")  # fmt: skip
    after = state(charge=waiting)
    assert plan(before, after, GRAPH, run=FLOW, now=NOW) == [
        Send(wakeups.FIRE_TIMER, (5, "charge", 1, "approval"), 0.0)
    ]
    assert plan(after, after, GRAPH, run=FLOW, now=NOW) == []


def test_a_sub_flow_run_tells_its_parent_once_when_it_ends():
    running, done = state(), state(status=decider.RUN_SUCCEEDED)
    assert tasks(plan(running, done, GRAPH, run=CHILD, now=NOW)) == [wakeups.SIGNAL_PARENT]
    assert plan(done, done, GRAPH, run=CHILD, now=NOW) == []
    assert plan(running, done, GRAPH, run=FLOW, now=NOW) == []  # a top-level run


def test_cancelling_a_step_that_waited_for_a_sub_flow_cancels_its_child():
    waiting = state(child=step("child", decider.WAITING, wait_reason="subflow"))
    cancelled = state(child=step("child", decider.CANCELLED))
    assert plan(waiting, cancelled, GRAPH, run=FLOW, now=NOW) == [
        Send(wakeups.CANCEL_ORPHANS, (5,))
    ]
    timer_wait = state(child=step("child", decider.WAITING, wait_reason="timer"))
    assert plan(timer_wait, cancelled, GRAPH, run=FLOW, now=NOW) == []


def test_a_finished_run_releases_the_next_run_of_its_concurrency_key():
    running = state(key="customer-9")
    failed = state(status=decider.RUN_FAILED, key="customer-9")
    assert plan(running, failed, GRAPH, run=FLOW, now=NOW) == [
        Send(wakeups.RELEASE_QUEUED, (7, "customer-9"))
    ]
    no_key = state(status=decider.RUN_FAILED)
    assert plan(state(), no_key, GRAPH, run=FLOW, now=NOW) == []


def test_the_sends_come_in_a_fixed_order():
    before = state(key="k", child=step("child", decider.WAITING, wait_reason="subflow"))
    after = state(
        status=decider.RUN_CANCELLED, key="k",
        charge=step("charge", decider.SCHEDULED),
        sum=step("sum", decider.RETRYING, due_at=NOW),
        child=step("child", decider.CANCELLED),
    )  # fmt: skip
    assert tasks(plan(before, after, GRAPH, run=CHILD, now=NOW, continuation=True)) == [
        wakeups.EXECUTE_STEP, wakeups.CONTINUE_RUN, wakeups.FIRE_TIMER,
        wakeups.SIGNAL_PARENT, wakeups.CANCEL_ORPHANS, wakeups.RELEASE_QUEUED,
    ]  # fmt: skip
