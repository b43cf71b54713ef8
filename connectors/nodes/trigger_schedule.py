"""Schedule trigger: a cron expression in a time zone.

Beat only ticks the trigger sweep; the sweep computes due fires and records
each one once (unique per flow and fire time), so restarts and a second beat
never fire twice.
"""

import zoneinfo
from typing import Literal

from croniter import croniter
from pydantic import field_validator

from connectors.base import Connector, Context, Result, StrictConfig, register


class ScheduleConfig(StrictConfig):
    cron: str
    timezone: str = "UTC"
    # A fire found late (the platform was down): run it late, or record it
    # as skipped.
    catch_up: Literal["run_late", "skip"] = "run_late"

    @field_validator("cron")
    @classmethod
    def valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value) or len(value.split()) != 5:
            raise ValueError(f"“{value}” is not a five-field cron expression")
        return value

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"“{value}” is not a known time zone") from None
        return value


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
