"""API tokens for tests, and calls made with them."""

import json

import pytest
from django.urls import reverse

from config.tokens import services
from tests.engine_helpers import READY, chain, publish


def token_for(user, scope: str, name: str = "ci") -> str:
    _, secret = services.token_create(user=user, name=name, scope=scope)
    return secret


def bearer(secret: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def call(client, method: str, url: str, secret: str | None = None, body=None, **headers):
    extra = {**(bearer(secret) if secret else {}), **headers}
    if method == "GET":
        return client.get(url, **extra)
    data = json.dumps(body if body is not None else {})
    return getattr(client, method.lower())(url, data, content_type="application/json", **extra)


@pytest.fixture(name="flow")
def ready_flow(adam, make_flow):
    """A published flow of one pure step, ready to start over the API."""
    flow = make_flow(adam, owner=adam, **READY)
    publish(adam, chain({"id": "shape", "type": "transform", "config": {"fields": {}}}),
            slug=flow.slug)  # fmt: skip
    return flow


def start_url(flow) -> str:
    return reverse("api:run_start", kwargs={"slug": flow.slug})
