"""Payments: charge a card through the payments API; its undo refunds the
charge. The API deduplicates on ``Idempotency-Key`` (the demo's is
``fakeapi/payments.py``), so a retried charge cannot charge twice."""

from typing import Any

from pydantic import Field

from connectors import base
from connectors.outbound import remote


class PaymentsConfig(base.StrictConfig):
    base_url: str = Field(default="http://127.0.0.1:8765", description="the payments API")
    order_id: str = Field(min_length=1)
    # A positive amount; usually an expression such as "{{ trigger.amount }}".
    amount: Any
    # A credential's name (bearer, header_key, basic or hmac); never a secret.
    credential: str | None = Field(default=None, description="the API's credential")
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)


@base.register
class PaymentsCharge(base.Connector):
    key = "payments.charge"
    in_palette = False  # a demo/benchmark stand-in, not for new flows
    label = "Charge payment"
    category = "Payments"
    icon = "credit-card"
    description = "Charge an order's amount; undone by refunding the charge."
    Config = PaymentsConfig
    example_config = {"order_id": "{{ trigger.order_id }}", "amount": "{{ trigger.amount }}",
                      "credential": "payments-api"}  # fmt: skip
    credential_fields = ("credential",)
    side_effect_class = base.SideEffect.COMPENSATABLE
    output_schema = {
        "type": "object",
        "properties": {
            "charge_id": {"type": "string"},
            "order_id": {"type": "string"},
            "amount": {"type": "number"},
        },
    }
    timeout_seconds = 60.0

    def breaker_target(self, config: PaymentsConfig) -> str | None:
        return base.target_of(config.base_url, config.credential)

    def execute(self, ctx: base.Context) -> base.Result:
        config: PaymentsConfig = ctx.config
        body = {"order_id": config.order_id, "amount": config.amount}
        charge = remote.post_json(ctx, f"{config.base_url}/charges", body,
                                   key=ctx.idempotency_key, timeout=config.timeout_seconds,
                                   credential=config.credential)  # fmt: skip
        return base.Result(output={"charge_id": charge["id"], "order_id": charge["order_id"],
                              "amount": charge["amount"]})  # fmt: skip

    def compensate(self, ctx: base.Context) -> base.Result:
        config: PaymentsConfig = ctx.config
        charge_id = (ctx.original_output or {}).get("charge_id")
        if not charge_id:
            raise base.not_sent("nothing to refund: the charge has no id")
        refund = remote.post_json(ctx, f"{config.base_url}/refunds", {"charge_id": charge_id},
                                   key=ctx.idempotency_key, timeout=config.timeout_seconds,
                                   credential=config.credential)  # fmt: skip
        return base.Result(output={"refund_id": refund["id"], "charge_id": charge_id})

    def test_connection(self, config: PaymentsConfig) -> None:
        remote.get_json(f"{config.base_url}/health", timeout=config.timeout_seconds,
                         credential=config.credential)  # fmt: skip
