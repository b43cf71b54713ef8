"""Loop over items: run one action (the body) per item, in batches.

The loop is one step; each iteration is its own durable unit. The step
renders ``items`` (a list), then runs the body per item with ``item`` and
``index`` available to the body's expressions, under the iteration's own
idempotency key (``decider.idempotency_key(iteration=i)``). After each batch
the finished iterations are committed as ``step.iteration_succeeded`` events
on the run's stream; a retry, or a new worker after a crash, skips every
recorded iteration. A crash inside a batch repeats only that batch's
unrecorded iterations, under the same keys, so an idempotent remote
deduplicates them. The output lists the bodies' outputs in item order.
"""

import dataclasses
from typing import Any

from pydantic import Field, ValidationError, model_validator

from connectors.base import (
    Connector,
    ConnectorError,
    Context,
    Result,
    SideEffect,
    StrictConfig,
    get,
    lease_margin,
    register,
)

MAX_ITEMS = 1000
MAX_BATCH = 100


class LoopBody(StrictConfig):
    type: str
    # Rendered per item: may read ``item`` and ``index`` besides the usual.
    config: dict = Field(default_factory=dict)


class LoopConfig(StrictConfig):
    # An expression yielding a list, e.g. "{{ trigger.lines }}".
    items: Any
    batch_size: int = Field(default=10, ge=1, le=MAX_BATCH)
    body: LoopBody

    @model_validator(mode="after")
    def body_is_runnable(self):
        from runs import expressions

        try:
            connector = body_connector(self.body)
        except ConnectorError as exc:
            raise ValueError(str(exc)) from None
        if not expressions.has_expression(self.body.config):
            # Nothing to render per item: it must be valid as it stands.
            try:
                connector.Config.model_validate(self.body.config)
            except ValidationError as exc:
                raise ValueError(f"body config: {exc}") from None
        return self


def body_connector(body: LoopBody) -> Connector:
    try:
        connector = get(body.type)
    except KeyError:
        raise ConnectorError(
            f"body: unknown connector type {body.type!r}", retryable=False
        ) from None
    if connector.is_trigger or isinstance(connector, Loop) or connector.key == "subflow":
        raise ConnectorError(f"body: {body.type} cannot run inside a loop", retryable=False)
    return connector


@register
class Loop(Connector):
    key = "loop"
    label = "Loop over items"
    category = "Logic"
    icon = "repeat"
    description = (
        "Run one action per item of a list, in batches; each item is a durable iteration "
        "with its own idempotency key."
    )
    Config = LoopConfig
    deferred_fields = ("body",)
    example_config = {
        "items": "{{ trigger.lines }}",
        "batch_size": 3,
        "body": {"type": "transform", "config": {"fields": {"sku": "{{ item.sku }}"}}},
    }
    output_schema = {
        "type": "object",
        "properties": {"count": {"type": "integer"}, "outputs": {"type": "array"}},
    }
    timeout_seconds = 300.0

    def side_effect(self, config: LoopConfig) -> SideEffect:
        connector = get(config.body.type)
        try:
            body = connector.Config.model_validate(config.body.config)
        except ValidationError:
            return SideEffect.UNSAFE  # cannot tell before rendering: assume the worst
        return connector.side_effect(body)

    def lease_seconds(self, config: LoopConfig) -> float:
        # One batch must fit in a lease; the heartbeat extends it between.
        return get(config.body.type).timeout_seconds * config.batch_size + lease_margin()

    def execute(self, ctx: Context) -> Result:
        from runs import expressions

        config: LoopConfig = ctx.config
        items = config.items
        if not isinstance(items, list):
            raise ConnectorError(
                f"items rendered to {type(items).__name__}, not a list", retryable=False
            )
        if len(items) > MAX_ITEMS:
            raise ConnectorError(f"{len(items)} items; a loop takes at most {MAX_ITEMS}",
                                 retryable=False)  # fmt: skip
        connector = body_connector(config.body)
        outputs: dict[int, Any] = dict(ctx.iterations_done)
        todo = [index for index in range(len(items)) if index not in outputs]
        for start in range(0, len(todo), config.batch_size):
            batch: dict[int, Any] = {}
            for index in todo[start : start + config.batch_size]:
                data = {**ctx.data, "item": items[index], "index": index}
                try:
                    rendered = expressions.render(config.body.config, data)
                    body_config = connector.Config.model_validate(rendered)
                except (expressions.ExpressionError, ValidationError) as exc:
                    self._save(ctx, batch)
                    raise ConnectorError(f"item {index}: body config: {exc}",
                                         retryable=False) from None  # fmt: skip
                try:
                    result = connector.execute(
                        dataclasses.replace(
                            ctx, config=body_config, idempotency_key=ctx.iteration_key(index),
                            node_id=f"{ctx.node_id}[{index}]", iterations_done={},
                        )
                    )  # fmt: skip
                except ConnectorError as exc:
                    # What finished before the failure stays finished.
                    self._save(ctx, batch)
                    raise ConnectorError(
                        f"item {index}: {exc}", retryable=exc.retryable,
                        retry_after=exc.retry_after, details=exc.details,
                    ) from None  # fmt: skip
                if result.wait_until is not None or result.wait_for:
                    self._save(ctx, batch)
                    raise ConnectorError(f"item {index}: a loop body cannot wait",
                                         retryable=False)  # fmt: skip
                batch[index] = result.output
            self._save(ctx, batch)
            outputs.update(batch)
            ctx.heartbeat()
        return Result(
            output={"count": len(items), "outputs": [outputs[i] for i in range(len(items))]}
        )

    @staticmethod
    def _save(ctx: Context, batch: dict[int, Any]) -> None:
        if batch:
            ctx.record_iterations(batch)
