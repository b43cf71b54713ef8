"""Schedule trigger: a cron expression in a time zone.

Beat only ticks the trigger sweep; the sweep computes due fires and records
each one once (unique per flow and fire time), so restarts and a second beat
never fire twice.
"""

from connectors.base import Connector, Context, Result, register
from connectors.triggers.configs import ScheduleConfig


@register
class ScheduleTrigger(Connector):
    key = "trigger.schedule"
    label = "Schedule"
    category = "Triggers"
    icon = "calendar"
    description = (
        "Starts a run on a cron schedule in a time zone, once per fire time even with several"
        " beat processes; a missed fire runs late or is recorded as skipped."
    )
    Config = ScheduleConfig
    example_config = {"cron": "0 7 * * 1-5", "timezone": "Europe/Berlin", "catch_up": "skip"}
    is_trigger = True
    inline = True

    def execute(self, ctx: Context) -> Result:
        return Result(output=ctx.data["trigger"])
