"""Call sub-flow: start a run of another flow (its published version) and
wait for its result.

The child run is keyed on this step's idempotency key (a unique column on
the run), so a retried or re-leased step finds the child it already started
instead of starting a second. The step waits with ``wait_for="subflow"``;
when the child reaches a terminal state the driver signals the step on the
child's terminal commit, and the recovery sweep re-signals any waiting step
whose child has already finished. Success leaves by ``out`` with the child's
output; failure either leaves by ``failed`` or dead-letters the step, as
``on_failure`` says.
"""

from typing import Any, Literal

from pydantic import Field

from connectors import base
from flows.models import Flow
from runs import decider, services
from runs.models import Run
from runs.subflows import child_outcome

# Sub-flows calling sub-flows: deeper than this is a runaway recursion.
MAX_DEPTH = 5


class SubflowConfig(base.StrictConfig):
    flow: str = Field(min_length=1, description="slug of the flow to run")
    # The child run's trigger input; may hold expressions.
    input: Any = Field(default_factory=dict)
    on_failure: Literal["fail", "port"] = "fail"


@base.register
class CallSubflow(base.Connector):
    key = "subflow"
    label = "Call sub-flow"
    category = "Logic"
    icon = "corner-down-right"
    description = (
        "Start a run of another flow with an input, wait for it, and go on with its output."
    )
    Config = SubflowConfig
    example_config = {"flow": "order-fulfilment", "input": {"order_id": "{{ trigger.order_id }}"},
                      "on_failure": "port"}  # fmt: skip
    side_effect_class = base.SideEffect.IDEMPOTENT
    ports = ("out", "failed")
    output_schema = {
        "type": "object",
        "properties": {
            "child_run_id": {"type": "integer"},
            "status": {"type": "string"},
            "output": {},
            "error": {"type": "string"},
        },
    }
    timeout_seconds = 30.0

    def execute(self, ctx: base.Context) -> base.Result:
        config: SubflowConfig = ctx.config
        parent = Run.objects.get(pk=ctx.run_id)
        flow = Flow.objects.filter(slug=config.flow).first()
        if flow is None:
            raise base.not_sent(f"no flow “{config.flow}”")
        if flow.pk == parent.flow_id or _depth(parent) >= MAX_DEPTH:
            raise base.not_sent(
                f"calling “{config.flow}” here would recurse (a flow cannot call itself, "
                f"and sub-flows nest at most {MAX_DEPTH} deep)"
            )
        try:
            child = services.start_run(
                flow=flow, input=config.input, actor=f"run:{ctx.run_id}",
                parent={"run_id": ctx.run_id, "node": ctx.node_id, "key": ctx.idempotency_key},
            )  # fmt: skip
        except services.StartRefused as exc:
            raise base.not_sent(str(exc)) from None
        if child.status in decider.RUN_TERMINAL:
            # Finished already (pure flows finish inside start_run): no wait.
            port, output, error = child_outcome(child, config.on_failure)
            if error:
                raise base.ConnectorError(error, retryable=False)
            return base.Result(output=output, port=port)
        return base.Result(output={"child_run_id": child.pk, "status": child.status},
                      wait_for="subflow")  # fmt: skip


def _depth(run: Run | None) -> int:
    depth = 0
    while run is not None and run.parent_run_id and depth <= MAX_DEPTH:
        depth += 1
        run = Run.objects.filter(pk=run.parent_run_id).first()
    return depth
