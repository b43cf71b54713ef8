"""Calls from a connector to a JSON API, through the HTTP request
connector's transport, so one place decides how Ledgerflow reaches the
outside (timeouts, size cap, error classes, outbound policy)."""

import dataclasses
import datetime as dt
from typing import Any

from connectors.base import Context
from connectors.nodes.http_request import HttpConfig, HttpRequest


def post_json(
    ctx: Context, url: str, body: Any, *, key: str, timeout: float, credential: str | None = None
) -> Any:
    """POST ``body`` with ``Idempotency-Key: key``; the parsed JSON answer,
    authenticated by the named credential (its secret comes from the store,
    never from the config). Raises ConnectorError (retryable or not) as the
    HTTP connector does."""
    config = HttpConfig(
        method="POST", url=url, json_body=body, timeout_seconds=timeout,
        credential=credential, honours_idempotency_key=True,
    )  # fmt: skip
    result = HttpRequest().execute(dataclasses.replace(ctx, config=config, idempotency_key=key))
    return result.output["body"]


def get_json(ctx_free_url: str, *, timeout: float, credential: str | None = None) -> Any:
    """GET without a step (a connection test); the parsed JSON answer."""
    config = HttpConfig(method="GET", url=ctx_free_url, timeout_seconds=timeout,
                        credential=credential)  # fmt: skip
    probe = Context(run_id=0, node_id="test_connection", attempt=1, config=config,
                    idempotency_key="", data={}, now=dt.datetime.now(dt.UTC))  # fmt: skip
    return HttpRequest().execute(probe).output["body"]
