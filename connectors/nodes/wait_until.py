"""Wait until: hold the run until an absolute time, on a durable timer.
The Delay connector's ``until``, under its own name in the catalogue."""

from pydantic import Field

from connectors.base import Connector, Context, Result, StrictConfig, register
from connectors.nodes.delay import parse_until, wait_until


class WaitUntilConfig(StrictConfig):
    # ISO 8601 with a time zone offset; may be an expression.
    until: str = Field(min_length=1)


@register
class WaitUntil(Connector):
    key = "wait.until"
    label = "Wait until"
    category = "Logic"
    icon = "calendar-clock"
    description = "Hold the run until an absolute time (ISO 8601 with a time zone)."
    Config = WaitUntilConfig
    example_config = {"until": "{{ trigger.ship_after }}"}
    output_schema = {"type": "object", "properties": {"until": {"type": "string"}}}
    inline = True

    def execute(self, ctx: Context) -> Result:
        return wait_until(parse_until(ctx.config.until))
