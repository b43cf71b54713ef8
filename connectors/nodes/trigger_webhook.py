"""Webhook trigger: an outside system POSTs to the flow's own URL.

The URL (``/hooks/<token>/``) is issued when a version with this trigger is
published. The delivery's body, query and headers are the run's input.
"""

from typing import Literal

from pydantic import Field, model_validator

from connectors.base import Connector, Context, Result, StrictConfig, register

# Dotted path into the body: "order.id".
FIELD_PATH = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$"


class WebhookConfig(StrictConfig):
    # The name of an hmac credential holding the shared secret; when set,
    # every delivery must be signed (header "t=<unix seconds>,v1=<hex of
    # HMAC-SHA256(secret, '<t>.<body>')>"). A credential, not a value in the
    # graph: graphs are recorded in the event log, secrets never are.
    credential: str = ""
    signature_header: str = "X-Ledgerflow-Signature"
    tolerance_seconds: int = Field(default=300, ge=10, le=3600)
    # Deduplication: the Idempotency-Key header, else this body field.
    dedup_field: str = Field(default="", pattern=f"({FIELD_PATH})?")
    # Ordering: a delivery whose ordering value is older than the newest seen
    # for the same entity is dropped and recorded as stale.
    ordering_field: str = Field(default="", pattern=f"({FIELD_PATH})?")
    entity_field: str = Field(default="", pattern=f"({FIELD_PATH})?")
    max_body_bytes: int = Field(default=262_144, ge=1, le=10_485_760)
    # "accepted": answer 202 with the run id at once; "respond_node": wait for
    # the flow's Respond-to-webhook node, up to response_timeout_seconds.
    respond: Literal["accepted", "respond_node"] = "accepted"
    response_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    @model_validator(mode="after")
    def ordering_needs_entity(self):
        if bool(self.ordering_field) != bool(self.entity_field):
            raise ValueError("give both ordering_field and entity_field, or neither")
        return self


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
