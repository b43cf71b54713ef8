"""Which API token a person acts through, for the length of one request.

The actor of an event stays the person (``user:<name>``), so every check
that compares people (separation of duties) compares people; the token is
recorded beside it, in the payload, on the events that person's request
appends. Held in a context variable: each thread and asyncio task sees only
its own. ``config/tokens`` opens a holder around each request and fills it
when a bearer token authenticates.
"""

import contextvars
from typing import Any

_holder: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "ledgerflow_acting_token", default=None
)


def begin() -> contextvars.Token:
    """An empty holder until ``end``: nothing acts through a token yet."""
    return _holder.set({})


def end(token: contextvars.Token) -> None:
    _holder.reset(token)


def through(*, actor: str, token: dict[str, Any]) -> None:
    """From now until ``end``, events by ``actor`` name ``token``."""
    holder = _holder.get()
    if holder is not None:
        holder.clear()
        holder.update(actor=actor, token=token)


def tag(payload: dict[str, Any], actor: str) -> dict[str, Any]:
    """``payload`` with the acting token added when ``actor`` acts through
    one; as given otherwise (the engine's own events, another person's)."""
    holder = _holder.get()
    if not holder or holder.get("actor") != actor:
        return payload
    key = "token" if "token" not in payload else "api_token"
    return {**payload, key: dict(holder["token"])}
