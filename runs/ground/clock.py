"""The one clock. Everything that stores or compares a time asks it.

Tests move time by installing a fixed or offset clock; nothing in Ledgerflow
uses the database's ``now()``, so web, worker and sweeps agree on the time.
"""

import contextlib
import datetime as dt
from collections.abc import Iterator

_frozen: dt.datetime | None = None


def now() -> dt.datetime:
    if _frozen is not None:
        return _frozen
    return dt.datetime.now(dt.UTC)


@contextlib.contextmanager
def frozen_at(moment: dt.datetime) -> Iterator[None]:
    """Stop the clock at ``moment`` for the duration of the block."""
    global _frozen
    if moment.tzinfo is None:
        raise ValueError("frozen_at needs an aware datetime")
    previous, _frozen = _frozen, moment.astimezone(dt.UTC)
    try:
        yield
    finally:
        _frozen = previous
