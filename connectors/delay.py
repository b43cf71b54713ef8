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
    Config = DelayConfig
    inline = True

    def execute(self, ctx: Context) -> Result:
        config = ctx.config
        if config.seconds is not None:
            due = ctx.now + dt.timedelta(seconds=config.seconds)
        else:
            try:
                due = dt.datetime.fromisoformat(config.until)
            except ValueError:
                raise ConnectorError(
                    f"until {config.until!r} is not an ISO 8601 time", retryable=False
                ) from None
            if due.tzinfo is None:
                raise ConnectorError("until needs a time zone offset", retryable=False)
        return Result(output={"until": due.astimezone(dt.UTC).isoformat()}, wait_until=due)
