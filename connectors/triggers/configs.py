"""The configs of the trigger nodes, with the triggers app that reads them.

The trigger nodes (connectors/nodes/trigger_*.py) declare these as their
config; the webhook receiver, the schedule sweep and the queue consumer read
them. They live here so that the triggers app never imports a node module:
nodes use the triggers app (the event bus, these configs), not the reverse.
"""

import zoneinfo
from typing import Literal

from croniter import croniter
from pydantic import Field, field_validator, model_validator

from connectors.base import StrictConfig

# Dotted path into the body: "order.id".
FIELD_PATH = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$"
# A queue's name, as RabbitMQ accepts it.
QUEUE = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$"


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


class QueueTriggerConfig(StrictConfig):
    queue: str = Field(pattern=QUEUE)
    # Deliveries after which RabbitMQ moves a message that keeps failing to
    # the dead-letter queue, where the consumer records it as poison.
    delivery_limit: int = Field(default=5, ge=1, le=100)


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
