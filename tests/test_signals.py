"""A step may wait with no timer for a signal from outside (a person's
decision, a sub-flow's result). The signal resumes the run once, on the port
it names; a signal of another kind, or a second one, changes nothing."""

import pytest

from connectors.base import Connector, Context, Result, StrictConfig, register
from runs import decider, driver
from runs.ground.models import Event
from runs.models import Run, Step
from tests.engine_helpers import chain, publish, transform


class SignalWaitConfig(StrictConfig):
    label: str = ""


@register
class WaitForSignal(Connector):
    """Waits for a "test" signal; leaves by "yes" or "no"."""

    key = "test.wait_for_signal"
    label = "Wait for a test signal"
    category = "Test"
    Config = SignalWaitConfig
    ports = ("yes", "no")
    inline = True

    def execute(self, ctx: Context) -> Result:
        return Result(output={"asked": True}, wait_for="test")


def signal_flow(olga):
    graph = chain({"id": "ask", "type": "test.wait_for_signal", "config": {}})
    graph["nodes"] += [transform("approved", ok=True), transform("refused", ok=False)]
    graph["edges"] += [
        {"from": "ask", "from_port": "yes", "to": "approved"},
        {"from": "ask", "from_port": "no", "to": "refused"},
    ]
    return publish(olga, graph, slug="signals")


def test_a_signal_resumes_a_waiting_step_once_on_its_port(olga, eager_celery):
    flow = signal_flow(olga)
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="olga")
    step = Step.objects.get(run=run, node_id="ask")
    assert (step.status, step.wait_reason, step.due_at) == ("waiting", "test", None)
    assert Run.objects.get(pk=run.pk).status == "waiting"

    with eager_celery():
        driver.signal_step(
            run.pk, "ask", step.attempt, reason="test", output={"answer": "no"}, port="no",
            actor="rita", extra_events=[("test.answered", {"node": "ask", "answer": "no"})],
        )  # fmt: skip
    run.refresh_from_db()
    assert run.status == "succeeded"
    states = dict(Step.objects.filter(run=run).values_list("node_id", "status"))
    assert states["approved"] == "skipped" and states["refused"] == "succeeded"
    events = list(
        Event.objects.filter(stream=run.stream).order_by("seq").values_list("type", "payload")
    )
    types = [kind for kind, _ in events]
    # The signal's own fact is recorded just before the step it ends.
    answered = types.index("test.answered")
    assert events[answered + 1] == (
        "step.succeeded",
        {"node": "ask", "attempt": 1, "output": {"answer": "no"}, "port": "no"},
    )

    # The run has moved on: a second signal is refused and changes nothing.
    with pytest.raises((decider.StaleCommand, decider.IllegalTransition)):
        driver.signal_step(run.pk, "ask", step.attempt, reason="test", port="yes")
    assert Event.objects.filter(stream=run.stream).count() == len(types)


def test_a_signal_of_another_kind_does_not_end_the_wait(olga, eager_celery):
    flow = signal_flow(olga)
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="olga")
    with pytest.raises(decider.StaleCommand):
        driver.signal_step(run.pk, "ask", 1, reason="subflow", port="yes")
    assert Step.objects.get(run=run, node_id="ask").status == "waiting"


def test_a_wait_that_gives_up_becomes_a_dead_letter_and_a_replay_waits_again(olga, eager_celery):
    flow = signal_flow(olga)
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="olga")
    with pytest.raises(decider.StaleCommand):
        driver.give_up_wait(run.pk, "ask", 1, reason="subflow", error="no answer")
    driver.give_up_wait(run.pk, "ask", 1, reason="test", error="nobody answered in time")
    step = Step.objects.get(run=run, node_id="ask")
    assert (step.status, step.error) == ("dead_lettered", "nobody answered in time")
    with eager_celery():
        driver.replay_dead_letter(run.pk, "ask", actor="olga")
    step.refresh_from_db()
    assert (step.status, step.attempt, step.wait_reason) == ("waiting", 2, "test")
