"""Webhook trigger: an outside system POSTs to the flow's own URL.

The URL (``/hooks/<token>/``) is issued when a version with this trigger is
published. The delivery's body, query and headers are the run's input.
"""

from connectors.base import Connector, Context, Result, register
from connectors.triggers.configs import WebhookConfig


@register
class WebhookTrigger(Connector):
    key = "trigger.webhook"
    label = "Webhook"
    category = "Triggers"
    icon = "link"
    description = (
        "Starts a run when an outside system POSTs to the flow's own URL: optional HMAC "
        "signatures, deduplication on Idempotency-Key or a body field, stale-delivery "
        "ordering."
    )
    Config = WebhookConfig
    example_config = {"credential": "shop-webhook-signing", "dedup_field": "order.id"}
    credential_fields = ("credential",)
    is_trigger = True
    inline = True

    def execute(self, ctx: Context) -> Result:
        return Result(output=ctx.data["trigger"])
