"""Branch: if/else on an expression. The edge not taken is skipped."""

from typing import Any

from connectors.base import Connector, ConnectorError, Context, Result, StrictConfig, register


class BranchConfig(StrictConfig):
    # An expression; rendered to a boolean (or "true"/"false" text).
    condition: Any


@register
class Branch(Connector):
    key = "branch"
    label = "Branch (if / else)"
    category = "Logic"
    icon = "git-branch"
    description = "If / else on a condition: leave by true or false; the other path is skipped."
    Config = BranchConfig
    example_config = {"condition": "{{ trigger.amount > 100 }}"}
    output_schema = {"type": "object", "properties": {"result": {"type": "boolean"}}}
    ports = ("true", "false")
    inline = True

    def execute(self, ctx: Context) -> Result:
        value = ctx.config.condition
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in ("true", "false"):
                raise ConnectorError(
                    f"condition rendered to {value!r}, not true or false", retryable=False
                )
            value = lowered == "true"
        taken = bool(value)
        return Result(output={"result": taken}, port="true" if taken else "false")
