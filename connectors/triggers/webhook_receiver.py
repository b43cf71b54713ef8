"""Webhook deliveries: signature, body, dedup key and ordering, then intake.

Plain functions of the request's parts, so the async view stays thin and
each rule is testable on its own.
"""

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from connectors.base import ConnectorError
from connectors.credentials.store import credential_for
from connectors.triggers import intake
from connectors.triggers.configs import WebhookConfig
from connectors.triggers.models import Binding
from runs.ground import plainjson
from runs.models import Step

# Headers never copied into a run's input: they carry credentials.
PRIVATE_HEADERS = {"authorization", "proxy-authorization", "cookie"}
MAX_KEY_LENGTH = 255
MAX_DEPTH = plainjson.MAX_DEPTH
# Unix seconds: twelve digits reach the year 33658. A longer "timestamp" is
# not one, and would overflow a float when compared with the clock.
TIMESTAMP = re.compile(r"[0-9]{1,12}")
TOO_DEEP = f"body is nested too deeply (more than {MAX_DEPTH} levels)"


class Rejected(Exception):
    """A delivery refused before intake; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Hook:
    binding: Binding
    config: WebhookConfig

    @property
    def flow(self):
        return self.binding.flow


def find(token: str) -> Hook | None:
    binding = (
        Binding.objects.select_related("flow").filter(token=token, kind="webhook").first()
        if token
        else None
    )
    if binding is None:
        return None
    return Hook(binding=binding, config=WebhookConfig.model_validate(binding.config))


def sign(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signing_secret(config: WebhookConfig) -> str:
    """The shared secret of the webhook's hmac credential; a credential that
    is missing or unreadable is the platform's fault, so 503 (the sender
    retries once an operator has fixed it), and the message names no secret."""
    try:
        return credential_for(config.credential, types={"hmac"}).secrets["secret"]
    except ConnectorError as exc:
        raise Rejected(503, f"this webhook's signing credential is unusable: {exc}") from None


def check_signature(config: WebhookConfig, header: str | None, body: bytes, now: float) -> str:
    """The verified signature, or Rejected (401). Header: ``t=<unix>,v1=<hex>``."""
    if not header:
        raise Rejected(401, f"missing {config.signature_header} header")
    parts = dict(item.strip().split("=", 1) for item in header.split(",") if "=" in item)
    if not TIMESTAMP.fullmatch(parts.get("t", "")):
        raise Rejected(401, "signature header has no timestamp t=<unix seconds>")
    timestamp = int(parts["t"])
    if abs(now - timestamp) > config.tolerance_seconds:
        raise Rejected(
            401,
            f"signature timestamp is outside the {config.tolerance_seconds}s"
            " tolerance (stale or clock skew)",
        )
    expected = sign(signing_secret(config), timestamp, body)
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise Rejected(401, "signature does not match the body")
    return expected


def parse_body(content_type: str, body: bytes, multipart: dict | None = None) -> Any:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data" and multipart is not None:
        return multipart  # parsed by Django; uploaded files are not kept
    if not body.strip():
        return {}
    if kind == "application/json" or kind.endswith("+json"):
        try:
            parsed = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite)
        except ValueError as exc:
            raise Rejected(400, f"body is not valid JSON: {exc}") from None
        except RecursionError:
            raise Rejected(400, TOO_DEEP) from None
        if _too_deep(parsed):
            raise Rejected(400, TOO_DEEP)
        return parsed
    if kind == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise Rejected(400, "body is not a valid form") from None
        return {name: values[0] if len(values) == 1 else values for name, values in fields.items()}
    raise Rejected(415, "send JSON or a form (urlencoded or multipart)")


def check_multipart(boundary: str | None, body: bytes, parts_parsed: int) -> None:
    """Django's parser skips what it cannot read (no boundary in the body, a
    part without a name, a missing closing line) and answers with fewer
    fields, so a broken body would start a run with half its input or none.
    Every part of the body must have been read, and the body must close."""
    if not body.strip():
        return  # an empty body is an empty form, as for the other types
    if not boundary:
        raise Rejected(400, "multipart body without a boundary in its Content-Type")
    delimiter = b"\r\n--" + boundary.encode("latin-1", "replace")
    framed = b"\r\n" + body  # the first delimiter may open the body
    if delimiter not in framed:
        raise Rejected(400, "body is not a valid multipart form: the boundary never occurs")
    if delimiter + b"--" not in framed:
        raise Rejected(400, "body is not a valid multipart form: it has no closing boundary")
    parts = framed.count(delimiter) - 1
    if parts != parts_parsed:
        raise Rejected(
            400,
            f"body is not a valid multipart form: {parts} parts, {parts_parsed} readable"
            " (each part needs a Content-Disposition with a name)",
        )


def _too_deep(value: Any) -> bool:
    # Checked without recursion; deeper documents would exhaust the stack of
    # the code that later walks them (redaction, expressions).
    level = [value]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return True


def _refuse_constant(name: str) -> float:
    # NaN and Infinity are not JSON, and the event log stores plain JSON only.
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def field_at(body: Any, path: str) -> Any:
    value = body
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def dedup_key(config: WebhookConfig, headers, body: Any) -> str | None:
    key = headers.get("Idempotency-Key")
    if not key and config.dedup_field:
        value = field_at(body, config.dedup_field)
        key = None if value is None else str(value)
    if not key:
        return None
    if len(key) > MAX_KEY_LENGTH:
        # Long keys still deduplicate; the ledger column holds their hash.
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def ordering(config: WebhookConfig, body: Any) -> tuple[str | None, Any]:
    if not config.ordering_field:
        return None, None
    entity = field_at(body, config.entity_field)
    position = field_at(body, config.ordering_field)
    if entity is None or position is None or isinstance(position, dict | list):
        raise Rejected(
            422,
            f"body needs {config.entity_field} and a number or timestamp"
            f" in {config.ordering_field}",
        )
    return str(entity)[:MAX_KEY_LENGTH], position


def run_input(body: Any, headers, query) -> dict:
    return {
        "body": body,
        "query": {name: query.get(name) for name in query},
        "headers": {
            name.lower(): value
            for name, value in headers.items()
            if name.lower() not in PRIVATE_HEADERS and "signature" not in name.lower()
        },
    }


def accept(
    hook: Hook,
    *,
    body: bytes,
    content_type: str,
    headers,
    query,
    signature_now: float,
    multipart: dict | None = None,
) -> intake.Outcome:
    """Everything after the size check, in one synchronous call."""
    config, flow = hook.config, hook.flow
    # The signature first: an unsigned delivery to a flow not in service is
    # refused without a trace, so nobody without the secret can write to
    # the flow's delivery log.
    if config.credential:
        signature = check_signature(
            config, headers.get(config.signature_header), body, signature_now
        )
        if not intake.remember_signature(flow, signature):
            raise Rejected(401, "this signature was already used (a replayed delivery)")
    if flow.status != "active":
        return intake.deliver(
            intake.Delivery(flow=flow, source="webhook", input=None, actor="webhook")
        )
    parsed = parse_body(content_type, body, multipart)
    entity, position = ordering(config, parsed)
    delivery = intake.Delivery(
        flow=flow,
        source="webhook",
        input=run_input(parsed, headers, query),
        actor="webhook",
        key=dedup_key(config, headers, parsed),
        entity=entity,
        position=position,
    )
    _check_storable(delivery)
    return intake.deliver(delivery)


def _check_storable(delivery: intake.Delivery) -> None:
    """400 for what the event log cannot store (a lone surrogate, NUL, a
    number too large), in the body, the query, a header or the key."""
    for part, value in (*delivery.input.items(), ("key", delivery.key)):
        problem = plainjson.problem(value)
        if problem:
            raise Rejected(400, f"the delivery's {part} cannot be stored: {problem}")


def response_in(state: Any, node: str) -> tuple[str, dict | None]:
    """``response_of`` from a run's state (``runs.decider.RunState``) as
    its start committed it, without a query; ("unknown", None) without one."""
    if state is None:
        return "unknown", None
    step = state.steps.get(node)
    output = step.output if step is not None and step.status == "succeeded" else None
    return state.status, output


def response_of(run_id: int, node: str) -> tuple[str, dict | None]:
    """(run status, the Respond node's output once it has succeeded)."""
    row = (
        Step.objects.filter(run_id=run_id, node_id=node)
        .values("status", "output", "run__status")
        .first()
    )
    if row is None:
        return "unknown", None
    output = row["output"] if row["status"] == "succeeded" else None
    return row["run__status"], output
