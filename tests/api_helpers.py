"""API tokens for tests, and calls made with them."""

import json

from config.tokens import services


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
