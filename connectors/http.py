"""HTTP request (httpx): method, URL, headers, JSON body; sends the step's
``Idempotency-Key``; classifies failures as retryable or not."""

import email.utils
import json
import time
from typing import Any, Literal

import httpx
from pydantic import Field

from connectors.base import (
    Connector,
    ConnectorError,
    Context,
    Result,
    SideEffect,
    StrictConfig,
    lease_margin,
    register,
    target_of,
)

MAX_RESPONSE_BYTES = 1_000_000
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class HttpConfig(StrictConfig):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    json_body: Any = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # The remote deduplicates on Idempotency-Key, so a retry cannot repeat the
    # effect: the step may be re-run after a crash.
    honours_idempotency_key: bool = False


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date, or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@register
class HttpRequest(Connector):
    key = "http.request"
    label = "HTTP request"
    category = "Network"
    icon = "globe"
    description = (
        "Call an HTTP endpoint with the step's Idempotency-Key; 5xx, 429 and timeouts retry."
    )
    Config = HttpConfig
    example_config = {"method": "POST", "url": "https://api.example.com/orders",
                      "json_body": {"id": "{{ trigger.order_id }}"},
                      "honours_idempotency_key": True}  # fmt: skip
    # Per config: GET and HEAD read only; other methods are idempotent when
    # the remote honours the key, else unsafe.
    side_effect_class = SideEffect.UNSAFE
    output_schema = {"type": "object", "properties": {"status": {"type": "integer"}, "body": {}}}
    timeout_seconds = 120.0

    def side_effect(self, config: HttpConfig) -> SideEffect:
        if config.method in ("GET", "HEAD"):
            return SideEffect.NONE
        return SideEffect.IDEMPOTENT if config.honours_idempotency_key else SideEffect.UNSAFE

    def lease_seconds(self, config: HttpConfig) -> float:
        return config.timeout_seconds + lease_margin()

    def breaker_target(self, config: HttpConfig) -> str | None:
        return target_of(config.url, getattr(config, "credential", None))

    def execute(self, ctx: Context) -> Result:
        config: HttpConfig = ctx.config
        headers = {"Idempotency-Key": ctx.idempotency_key, **config.headers}
        try:
            with httpx.Client(timeout=config.timeout_seconds, follow_redirects=False) as client:
                with client.stream(
                    config.method,
                    config.url,
                    headers=headers,
                    params=config.query or None,
                    json=config.json_body if config.method not in ("GET", "HEAD") else None,
                ) as response:
                    body = self._read_capped(response)
        except httpx.TimeoutException as exc:
            raise ConnectorError(f"timed out: {exc}", retryable=True) from None
        except httpx.TransportError as exc:
            raise ConnectorError(f"connection failed: {exc}", retryable=True) from None
        except httpx.InvalidURL as exc:
            raise ConnectorError(f"invalid URL: {exc}", retryable=False) from None
        output = {"status": response.status_code, "body": self._parse(response, body)}
        if response.status_code >= 400:
            raise ConnectorError(
                f"{config.method} {config.url} answered {response.status_code}",
                retryable=response.status_code in RETRYABLE_STATUS,
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
                details=output,
            )
        return Result(output=output)

    @staticmethod
    def _read_capped(response: httpx.Response) -> bytes:
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ConnectorError(
                    f"response is larger than {MAX_RESPONSE_BYTES} bytes", retryable=False
                )
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _parse(response: httpx.Response, body: bytes) -> Any:
        text = body.decode(response.encoding or "utf-8", errors="replace")
        if "json" in response.headers.get("content-type", ""):
            try:
                return json.loads(text)
            except ValueError:
                pass
        return text
