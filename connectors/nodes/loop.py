"""Loop over items: run one action (the body) per item, in batches.

The loop is one step; each iteration is its own durable unit. The step
renders ``items`` (a list), then runs the body per item with ``item`` and
``index`` available to the body's expressions, under the iteration's own
idempotency key (``decider.idempotency_key(iteration=i)``). After each batch
the finished iterations are committed as ``step.iteration_succeeded`` events
on the run's stream; a retry, or a new worker after a crash, skips every
recorded iteration. A crash inside a batch repeats only that batch's
unrecorded iterations, under the same keys, so an idempotent remote
deduplicates them. A body that calls out (not inline) runs a batch's items
concurrently, up to ``MAX_PARALLEL`` at once, with no database access; a
pure body runs them in order, and so does one that names a credential
(reading the store is database access: it happens in the loop's thread).
One failing item fails the step after the batch's finished items are
recorded. The output lists the bodies' outputs in item order.
"""

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import Field, ValidationError, model_validator

from connectors import base
from runs import expressions

MAX_ITEMS = 1000
MAX_BATCH = 100
# Calls of one batch in flight at once: a batch is also a burst at the remote.
MAX_PARALLEL = 10


class LoopBody(base.StrictConfig):
    type: str
    # Rendered per item: may read ``item`` and ``index`` besides the usual.
    config: dict = Field(default_factory=dict)


class LoopConfig(base.StrictConfig):
    # An expression yielding a list, e.g. "{{ trigger.lines }}".
    items: Any
    batch_size: int = Field(default=10, ge=1, le=MAX_BATCH)
    body: LoopBody

    @model_validator(mode="after")
    def body_is_runnable(self):
        try:
            connector = body_connector(self.body)
        except base.ConnectorError as exc:
            raise ValueError(str(exc)) from None
        if not expressions.has_expression(self.body.config):
            # Nothing to render per item: it must be valid as it stands.
            try:
                connector.Config.model_validate(self.body.config)
            except ValidationError as exc:
                raise ValueError(f"body config: {exc}") from None
        return self


def body_connector(body: LoopBody) -> base.Connector:
    try:
        connector = base.get(body.type)
    except KeyError:
        raise base.ConnectorError(
            f"body: unknown connector type {body.type!r}", retryable=False
        ) from None
    if connector.is_trigger or isinstance(connector, Loop) or connector.key == "subflow":
        raise base.ConnectorError(f"body: {body.type} cannot run inside a loop", retryable=False)
    return connector


@base.register
class Loop(base.Connector):
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

    def side_effect(self, config: LoopConfig) -> base.SideEffect:
        connector = base.get(config.body.type)
        try:
            body = connector.Config.model_validate(config.body.config)
        except ValidationError:
            return base.SideEffect.UNSAFE  # cannot tell before rendering: assume the worst
        return connector.side_effect(body)

    def lease_seconds(self, config: LoopConfig) -> float:
        # One batch must fit in a lease; the heartbeat extends it between.
        return base.get(config.body.type).timeout_seconds * config.batch_size + base.lease_margin()

    def execute(self, ctx: base.Context) -> base.Result:
        config: LoopConfig = ctx.config
        items = config.items
        if not isinstance(items, list):
            raise base.not_sent(f"items rendered to {type(items).__name__}, not a list")
        if len(items) > MAX_ITEMS:
            raise base.not_sent(f"{len(items)} items; a loop takes at most {MAX_ITEMS}")
        connector = body_connector(config.body)
        outputs: dict[int, Any] = dict(ctx.iterations_done)
        todo = [index for index in range(len(items)) if index not in outputs]
        for start in range(0, len(todo), config.batch_size):
            indexes = todo[start : start + config.batch_size]
            finished, failure = self._run_batch(ctx, connector, items, indexes)
            # What finished stays finished, even when another item failed.
            if finished:
                ctx.record_iterations(finished)
            if failure is not None:
                raise failure
            outputs.update(finished)
            ctx.heartbeat()
        return base.Result(
            output={"count": len(items), "outputs": [outputs[i] for i in range(len(items))]}
        )

    def _run_batch(
        self, ctx: base.Context, connector: base.Connector, items: list, indexes: list[int]
    ) -> tuple[dict[int, Any], base.ConnectorError | None]:
        """Run one batch: a pure body in order, a calling body concurrently
        (at most ``MAX_PARALLEL`` calls at once). The outputs that finished,
        and the failure of the lowest failing index, if any."""

        def one(index: int) -> Any:
            return self._iteration(ctx, connector, items[index], index)

        finished: dict[int, Any] = {}
        failures: dict[int, base.ConnectorError] = {}
        names_credential = any(ctx.config.body.config.get(f) for f in connector.credential_fields)
        if connector.inline or len(indexes) == 1 or names_credential:
            for index in indexes:
                try:
                    finished[index] = one(index)
                except base.ConnectorError as exc:
                    failures[index] = exc
                    break
        else:
            with ThreadPoolExecutor(max_workers=min(len(indexes), MAX_PARALLEL)) as pool:
                futures = {index: pool.submit(one, index) for index in indexes}
            for index, future in futures.items():
                try:
                    finished[index] = future.result()
                except base.ConnectorError as exc:
                    failures[index] = exc
        first = min(failures, default=None)
        return finished, failures[first] if first is not None else None

    @staticmethod
    def _iteration(ctx: base.Context, connector: base.Connector, item: Any, index: int) -> Any:
        body = ctx.config.body
        try:
            rendered = expressions.render(body.config, {**ctx.data, "item": item, "index": index})
            config = connector.Config.model_validate(rendered)
        except (expressions.ExpressionError, ValidationError) as exc:
            raise base.not_sent(f"item {index}: body config: {exc}") from None
        item_ctx = dataclasses.replace(
            ctx, config=config, idempotency_key=ctx.iteration_key(index),
            node_id=f"{ctx.node_id}[{index}]", iterations_done={},
        )  # fmt: skip
        try:
            result = connector.execute(item_ctx)
        except base.ConnectorError as exc:
            raise base.ConnectorError(
                f"item {index}: {exc}", retryable=exc.retryable, retry_after=exc.retry_after,
                details=exc.details, may_have_been_sent=exc.may_have_been_sent,
            ) from None  # fmt: skip
        except Exception as exc:  # a bug in the body fails its item, visibly
            raise base.ConnectorError(f"item {index}: {type(exc).__name__}: {exc}",
                                 retryable=False) from None  # fmt: skip
        if result.wait_until is not None or result.wait_for:
            raise base.ConnectorError(f"item {index}: a loop body cannot wait", retryable=False)
        return result.output
