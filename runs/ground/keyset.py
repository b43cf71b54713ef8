"""Keyset page cursors: the (time, id) of the last row a page showed, as an
opaque token for a link. Lists ordered newest first by (time, id) page from
it with an index walk, never OFFSET (the runs list, the audit trail)."""

import base64
import binascii
from datetime import datetime

from django.db.models import Q


class BadCursor(ValueError):
    pass


def encode(when: datetime, pk: int) -> str:
    raw = f"{when.isoformat()}|{pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, int]:
    """The (time, id) a cursor names; ``BadCursor`` for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stamp, pk = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None:
            raise ValueError("naive time")
        return when, int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadCursor("This page link is damaged; start again from the first page.") from exc


def before(time_field: str, when: datetime, pk: int) -> Q:
    """Rows after the cursor's (time, id) in a newest-first list.

    The ``time <= when`` term says nothing the OR does not, but it is what
    lets PostgreSQL start its walk of the (time, id) index at the cursor:
    given only the OR, it walks from the newest row and filters, so a page
    half-way back through a million runs read half a million index entries
    (6 s) instead of fifty."""
    return Q(**{f"{time_field}__lte": when}) & (
        Q(**{f"{time_field}__lt": when}) | Q(**{time_field: when, "pk__lt": pk})
    )
