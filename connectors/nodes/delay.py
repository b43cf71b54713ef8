"""Delay: wait a duration, or until an absolute time, on a durable timer."""

import datetime as dt

from pydantic import model_validator

from connectors.base import Connector, ConnectorError, Context, Result, StrictConfig, register


class DelayConfig(StrictConfig):
    seconds: float | None = None
    # ISO 8601 with a time zone; may be an expression.
    until: str | None = None

    @model_validator(mode="after")
    def one_of(self):
        if (self.seconds is None) == (self.until is None):
            raise ValueError("give either seconds or until")
        if self.seconds is not None and not 0 <= self.seconds <= 366 * 86400:
            raise ValueError("seconds must be between 0 and one year")
        return self


@register
class Delay(Connector):
    key = "delay"
    label = "Delay"
    category = "Logic"
    icon = "clock"
    description = "Wait a number of seconds (or until a time) on a durable timer."
    Config = DelayConfig
    example_config = {"seconds": 300}
    output_schema = {"type": "object", "properties": {"until": {"type": "string"}}}
    inline = True

    def execute(self, ctx: Context) -> Result:
        config = ctx.config
        if config.seconds is not None:
            due = ctx.now + dt.timedelta(seconds=config.seconds)
        else:
            due = parse_until(config.until)
        return wait_until(due)


def parse_until(text: str) -> dt.datetime:
    """An absolute due time: ISO 8601 with a time zone."""
    try:
        due = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ConnectorError(f"until {text!r} is not an ISO 8601 time", retryable=False) from None
    if due.tzinfo is None:
        raise ConnectorError("until needs a time zone offset", retryable=False)
    return due


def wait_until(due: dt.datetime) -> Result:
    """Wait on a durable timer; a time already past fires at the next sweep."""
    return Result(output={"until": due.astimezone(dt.UTC).isoformat()}, wait_until=due)
