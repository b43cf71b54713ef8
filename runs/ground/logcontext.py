"""What a log line is about: the run, its step and its flow, where known.

Held in a context variable, so each thread and each asyncio task sees only
its own, and set around units of work (a Celery task from its arguments,
config/celery.py; a trigger's delivery, connectors/triggers/intake.py).
config/logjson.py writes the fields into every JSON log line.
"""

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

FIELDS = ("run_id", "step", "flow")

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "ledgerflow_log_context", default=None
)


def current() -> dict[str, Any]:
    return _current.get() or {}


def bind(**fields: Any) -> contextvars.Token:
    """Add fields to the context until ``unbind`` with the returned token.
    For signal pairs (Celery's prerun and postrun) that cannot share a block."""
    known = {key: value for key, value in fields.items() if value not in (None, "")}
    return _current.set({**current(), **known})


def unbind(token: contextvars.Token) -> None:
    _current.reset(token)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)
