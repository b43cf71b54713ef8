"""Transform: set fields from expressions."""

from typing import Any

from connectors.base import Connector, Context, Result, StrictConfig, register


class TransformConfig(StrictConfig):
    # field name -> value; strings may hold expressions.
    fields: dict[str, Any]


@register
class Transform(Connector):
    key = "transform"
    label = "Transform"
    category = "Data"
    icon = "shuffle"
    description = "Set fields from expressions; the fields are the output."
    Config = TransformConfig
    example_config = {"fields": {"total": "{{ trigger.amount * 2 }}", "currency": "EUR"}}
    output_schema = {"type": "object"}
    inline = True

    def execute(self, ctx: Context) -> Result:
        return Result(output=dict(ctx.config.fields))
