"""The test URL of a webhook flow's draft (n8n's "test webhook").

Deliveries to ``/hooks/test/<token>/`` start test runs of the flow's saved
draft when its trigger is a webhook, with the live URL's checks (body size,
signature and replay guard when the draft's webhook names a signing
credential, body parsing, storable input). No dedup ledger and no ordering:
each delivery is a new try of the draft. The token needs no storage: an HMAC
of the flow's id under the site's secret key, so it exists before the first
publish, is stable across drafts and cannot be guessed from the id.
"""

from dataclasses import dataclass
from typing import Any

from django.utils.crypto import constant_time_compare, salted_hmac
from pydantic import ValidationError

from connectors.triggers import intake, webhook_receiver
from connectors.triggers.configs import WebhookConfig
from flows.models import Flow
from runs.ground import plainjson

SALT = "ledgerflow.webhook-test-url"
WEBHOOK_TYPE = "trigger.webhook"


def token_for(flow_id: int) -> str:
    return f"{flow_id}.{salted_hmac(SALT, str(flow_id)).hexdigest()[:40]}"


def draft_webhook(graph: dict | None) -> dict | None:
    """The draft's webhook trigger node, if its trigger is a webhook."""
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        return None
    for node in graph["nodes"]:
        if isinstance(node, dict) and node.get("type") == WEBHOOK_TYPE:
            return node
    return None


@dataclass
class TestHook:
    flow: Flow
    config: WebhookConfig


def find(token: str) -> TestHook | None:
    """The flow whose test URL this is, with its draft's webhook config;
    None for an unknown token or a draft without a webhook trigger."""
    flow_id, _, _ = token.partition(".")
    if not flow_id.isdigit() or not constant_time_compare(token, token_for(int(flow_id))):
        return None
    flow = Flow.objects.filter(pk=int(flow_id)).first()
    node = draft_webhook(flow.draft_graph) if flow else None
    if node is None:
        return None
    try:
        config = WebhookConfig.model_validate(node.get("config") or {})
    except ValidationError as exc:
        raise webhook_receiver.Rejected(
            409, f"the draft's webhook trigger is not valid yet: {exc}"
        ) from None
    return TestHook(flow=flow, config=config)


def accept(
    hook: TestHook, *, body: bytes, content_type: str, headers, query, signature_now: float,
    multipart: dict | None = None,
) -> Any:  # fmt: skip
    """Check a test delivery as the live URL would and start a test run of
    the draft; Rejected for what the live URL refuses too."""
    from flows import services, testruns

    config, flow = hook.config, hook.flow
    if config.credential:
        signature = webhook_receiver.check_signature(
            config, headers.get(config.signature_header), body, signature_now
        )
        if not intake.remember_signature(flow, signature):
            raise webhook_receiver.Rejected(
                401, "this signature was already used (a replayed delivery)"
            )
    parsed = webhook_receiver.parse_body(content_type, body, multipart)
    confirmed = query.get("confirm_side_effects") == "true"
    query = {name: query.get(name) for name in query if name != "confirm_side_effects"}
    run_input = webhook_receiver.run_input(parsed, headers, query)
    for part, value in run_input.items():
        problem = plainjson.problem(value)
        if problem:
            raise webhook_receiver.Rejected(
                400, f"the delivery's {part} cannot be stored: {problem}"
            )
    try:
        return testruns.test_run_start(
            flow=flow, actor="webhook:test", input=run_input, confirm_side_effects=confirmed
        )
    except testruns.SideEffectsUnconfirmed as exc:
        raise webhook_receiver.Rejected(
            409, f"{exc} Add ?confirm_side_effects=true to the test URL to run them."
        ) from None
    except services.InvalidDraft as exc:
        raise webhook_receiver.Rejected(
            422, "the draft cannot run yet: " + "; ".join(map(str, exc.errors))
        ) from None
    except services.FlowError as exc:
        raise webhook_receiver.Rejected(409, str(exc)) from None
