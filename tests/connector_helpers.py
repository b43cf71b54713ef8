"""Running one connector directly, and local servers it may reach."""

from dataclasses import dataclass, field

from connectors import base as connectors
from runs.ground import clock


def run_connector(key: str, config: dict, *, run_id: int = 0, node: str = "step"):
    connector = connectors.get(key)
    ctx = connectors.Context(
        run_id=run_id,
        node_id=node,
        attempt=1,
        config=connector.Config.model_validate(config),
        idempotency_key="idem-key-1",
        data={},
        now=clock.now(),
    )
    return connector.execute(ctx)


@dataclass
class MailSink:
    """What a local SMTP server received."""

    host: str
    port: int
    messages: list = field(default_factory=list)
    logins: list = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 Message accepted"
