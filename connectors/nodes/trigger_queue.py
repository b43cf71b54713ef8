"""Queue trigger: ``manage.py consume_queues`` reads the named RabbitMQ
queue and starts one run per message (deduplicated on its message id)."""

from connectors.base import Connector, Context, Result, register
from connectors.triggers.configs import QueueTriggerConfig


@register
class QueueTrigger(Connector):
    key = "trigger.queue"
    label = "Queue"
    category = "Triggers"
    icon = "inbox"
    description = (
        "Starts a run for every message on a RabbitMQ quorum queue; a message is acknowledged"
        " only after its run's start is committed, and poison messages go to a dead-letter "
        "queue."
    )
    Config = QueueTriggerConfig
    example_config = {"queue": "orders.incoming", "delivery_limit": 5}
    is_trigger = True
    inline = True

    def execute(self, ctx: Context) -> Result:
        return Result(output=ctx.data["trigger"])
