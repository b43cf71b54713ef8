"""Manual trigger: a person starts the run with a JSON input."""

from pydantic import Field

from connectors.base import Connector, Context, Result, StrictConfig, register


class ManualTriggerConfig(StrictConfig):
    # JSON Schema the start form validates the input against (optional).
    input_schema: dict = Field(default_factory=dict)


@register
class ManualTrigger(Connector):
    key = "trigger.manual"
    label = "Manual start"
    category = "Triggers"
    icon = "play"
    description = "A person starts the run from the flow's page with a JSON input."
    Config = ManualTriggerConfig
    example_config = {"input_schema": {"type": "object", "required": ["order_id"]}}
    is_trigger = True
    inline = True

    def execute(self, ctx: Context) -> Result:
        return Result(output=ctx.data["trigger"])
