"""Inventory: reserve stock for an order through the inventory API; its
undo releases the reservation. The API deduplicates on ``Idempotency-Key``
(the demo's is the inventory part of ``fakeapi/payments.py``)."""

from pydantic import Field

from connectors import base
from connectors.outbound import remote


class InventoryConfig(base.StrictConfig):
    base_url: str = Field(default="http://127.0.0.1:8765", description="the inventory API")
    order_id: str = Field(min_length=1)
    sku: str = Field(min_length=1)
    quantity: int = Field(default=1, ge=1, le=10_000)
    # A credential's name (bearer, header_key, basic or hmac); never a secret.
    credential: str | None = Field(default=None, description="the API's credential")
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)


@base.register
class InventoryReserve(base.Connector):
    key = "inventory.reserve"
    in_palette = False  # a demo/benchmark stand-in, not for new flows
    label = "Reserve stock"
    category = "Inventory"
    icon = "package"
    description = "Reserve stock for an order; undone by releasing the reservation."
    Config = InventoryConfig
    example_config = {"order_id": "{{ trigger.order_id }}", "sku": "{{ trigger.sku }}",
                      "quantity": 1, "credential": "inventory-api"}  # fmt: skip
    credential_fields = ("credential",)
    side_effect_class = base.SideEffect.COMPENSATABLE
    output_schema = {
        "type": "object",
        "properties": {
            "reservation_id": {"type": "string"},
            "order_id": {"type": "string"},
            "sku": {"type": "string"},
            "quantity": {"type": "integer"},
        },
    }
    timeout_seconds = 60.0

    def breaker_target(self, config: InventoryConfig) -> str | None:
        return base.target_of(config.base_url, config.credential)

    def execute(self, ctx: base.Context) -> base.Result:
        config: InventoryConfig = ctx.config
        body = {"order_id": config.order_id, "sku": config.sku, "quantity": config.quantity}
        reservation = remote.post_json(ctx, f"{config.base_url}/reservations", body,
                                        key=ctx.idempotency_key, timeout=config.timeout_seconds,
                                        credential=config.credential)  # fmt: skip
        return base.Result(output={"reservation_id": reservation["id"], **body})

    def compensate(self, ctx: base.Context) -> base.Result:
        config: InventoryConfig = ctx.config
        reservation_id = (ctx.original_output or {}).get("reservation_id")
        if not reservation_id:
            raise base.not_sent("nothing to release: no reservation id")
        remote.post_json(ctx, f"{config.base_url}/reservations/{reservation_id}/release", {},
                          key=ctx.idempotency_key, timeout=config.timeout_seconds,
                          credential=config.credential)  # fmt: skip
        return base.Result(output={"released": reservation_id})

    def test_connection(self, config: InventoryConfig) -> None:
        remote.get_json(f"{config.base_url}/health", timeout=config.timeout_seconds,
                         credential=config.credential)  # fmt: skip
