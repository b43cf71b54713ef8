"""Respond to webhook: the answer a waiting webhook delivery gets.

When the webhook trigger is set to ``respond: respond_node``, the webhook
view waits (up to its timeout) for this node's output and returns it as the
HTTP response; otherwise the node only records what it would have answered.
"""

from typing import Any

from pydantic import Field, field_validator

from connectors.base import Connector, Context, Result, StrictConfig, register

# Headers the server owns; a flow may not set them.
FORBIDDEN_HEADERS = {
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "set-cookie",
    "trailer",
}


class RespondConfig(StrictConfig):
    status: int = Field(default=200, ge=200, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None

    @field_validator("headers")
    @classmethod
    def allowed_headers(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(name for name in value if name.lower() in FORBIDDEN_HEADERS)
        if bad:
            raise ValueError("these headers are set by the server: " + ", ".join(bad))
        return value


@register
class RespondToWebhook(Connector):
    key = "webhook.respond"
    label = "Respond to webhook"
    category = "Triggers"
    icon = "reply"
    description = (
        "Answers the webhook delivery that started the run (status, headers, body), when the "
        "webhook trigger waits for a response."
    )
    Config = RespondConfig
    example_config = {
        "status": 200,
        "headers": {"X-Order": "{{ trigger.body.order_id }}"},
        "body": {"accepted": True},
    }
    inline = True

    def execute(self, ctx: Context) -> Result:
        config: RespondConfig = ctx.config
        return Result(
            output={"status": config.status, "headers": dict(config.headers), "body": config.body}
        )
