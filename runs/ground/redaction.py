"""Redaction of registered secret values, applied by the event store's append.

Secrets reach events in surprising ways: an error body that echoes an
Authorization header, a URL with a token in its query string, a basic-auth
header in base64. Every registered value is removed in its plain, base64 and
URL-encoded forms before an event is hashed, so the chain never commits to a
secret. Providers register a callable so that keys rotated at run time (the
credential store) are picked up without restarting.
"""

import base64
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
# Shorter values would redact ordinary words; secrets worth the name are longer.
MIN_SECRET_LENGTH = 6

_providers: list[Callable[[], Iterable[str]]] = []


def register_secret_provider(provider: Callable[[], Iterable[str]]) -> None:
    if provider not in _providers:
        _providers.append(provider)


def unregister_secret_provider(provider: Callable[[], Iterable[str]]) -> None:
    if provider in _providers:
        _providers.remove(provider)


def _encodings(secret: str) -> set[str]:
    raw = secret.encode()
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
    }
    forms |= {form.rstrip("=") for form in forms}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def secret_forms() -> list[str]:
    """Every form of every registered secret, longest first.

    Longest first so that a secret containing another is removed whole.
    """
    forms: set[str] = set()
    for provider in _providers:
        for secret in provider():
            if secret and len(secret) >= MIN_SECRET_LENGTH:
                forms |= _encodings(secret)
    return sorted(forms, key=len, reverse=True)


def redact(value: Any, forms: list[str]) -> Any:
    """Return ``value`` (JSON-shaped) with every secret form replaced."""
    if not forms:
        return value
    if isinstance(value, str):
        for form in forms:
            if form in value:
                value = value.replace(form, REDACTED)
        return value
    if isinstance(value, dict):
        return {redact(key, forms): redact(item, forms) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item, forms) for item in value]
    return value
