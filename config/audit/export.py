"""The audit trail as CSV or JSON lines, written as it is read.

The events come from a server-side cursor (``iterator``) in chunks, and each
line is yielded as soon as it is formatted, so an export of a million events
holds one chunk in memory, never the result.
"""

import csv
import io
import json
from collections.abc import Iterator

from config.audit import trail, words
from runs.ground.models import Event

CHUNK_SIZE = 2000
COLUMNS = ["occurred_at", "stream", "seq", "type", "actor", "description", "payload", "hash"]


def events_for_export(filters: trail.AuditFilters) -> Iterator[Event]:
    return trail.filtered_events(filters).iterator(chunk_size=CHUNK_SIZE)


def _record(event: Event, names: words.Names) -> dict:
    return {
        "occurred_at": event.occurred_at.isoformat(),
        "stream": event.stream,
        "seq": event.seq,
        "type": event.type,
        "actor": event.actor,
        "description": words.describe(event, names),
        "payload": event.payload,
        "hash": event.hash,
    }


def _cell(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    # A cell starting with =, +, - or @ is a formula to spreadsheet programs.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def csv_lines(filters: trail.AuditFilters) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(COLUMNS)
    names = trail.flow_names()
    for event in events_for_export(filters):
        record = _record(event, names)
        yield line([_cell(record[column]) for column in COLUMNS])


def jsonl_lines(filters: trail.AuditFilters) -> Iterator[str]:
    names = trail.flow_names()
    for event in events_for_export(filters):
        yield json.dumps(_record(event, names), ensure_ascii=False, sort_keys=True) + "\n"
