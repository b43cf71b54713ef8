"""Event trigger: the flow listens to a topic of the event bus; every event
published there starts one run of it (choreography)."""

from pydantic import Field

from connectors.base import Connector, Context, Result, StrictConfig, register

TOPIC = r"^[a-z0-9][a-z0-9._\-]{0,199}$"


class EventTriggerConfig(StrictConfig):
    topic: str = Field(pattern=TOPIC)


@register
class EventTrigger(Connector):
    key = "trigger.event"
    label = "Event"
    category = "Triggers"
    icon = "radio"
    description = "Starts a run for every event published to a topic (once per event)."
    Config = EventTriggerConfig
    example_config = {"topic": "orders.shipped"}
    is_trigger = True
    inline = True

    def execute(self, ctx: Context) -> Result:
        return Result(output=ctx.data["trigger"])
