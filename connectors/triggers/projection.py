"""Derive the trigger rows again from the event log alone.

- ``Binding``: from ``flow.published`` and the webhook token events.
- ``Receipt`` (the dedup ledger) and ``Watermark``: from the
  ``trigger.accepted`` event each triggered run carries on its own stream,
  and from the once-only records (skipped or refused fires and events).
  Webhook keys older than the retention window are left out, as the sweep
  would have purged them.
- ``DeliveryRecord``: from the ``triggers:<flow id>`` streams.
- ``Backfill``: from the ``backfill:<id>`` streams; a backfill's receipts
  name it from their ``trigger.accepted`` events.
``SeenSignature`` is a replay guard, not a projection (see models).
"""

import datetime as dt

from django.conf import settings

from connectors.triggers import backfills, bindings
from connectors.triggers.intake import is_older, record_from
from connectors.triggers.models import Binding, DeliveryRecord, Receipt, Watermark
from flows.models import Flow
from runs.ground import clock
from runs.ground.models import Event, Stream


def rebuild() -> int:
    flows = set(Flow.objects.values_list("id", flat=True))
    count = _rebuild_bindings(flows)
    count += _rebuild_records(flows)
    count += _rebuild_ledger(flows)
    count += backfills.rebuild(flows)
    return count


def _rebuild_bindings(flows: set[int]) -> int:
    Binding.objects.all().delete()
    types = ["flow.published", *bindings.TOKEN_EVENTS]
    rows: dict[int, Binding] = {}
    for event in Event.objects.filter(stream__startswith="flow:", type__in=types).order_by(
        "stream", "seq"
    ):
        flow_id = event.payload["flow_id"]
        current = rows.get(flow_id)
        if current is None and event.type != "flow.published":
            continue
        rows[flow_id] = bindings.apply(event, current)
    Binding.objects.bulk_create(b for b in rows.values() if b.flow_id in flows)
    return len(rows)


def _rebuild_records(flows: set[int]) -> int:
    DeliveryRecord.objects.all().delete()
    records = []
    for name in Stream.objects.filter(name__startswith="triggers:").values_list("name", flat=True):
        for event in Event.objects.filter(stream=name).order_by("seq"):
            if event.payload["flow_id"] in flows:
                records.append(record_from(event))
    DeliveryRecord.objects.bulk_create(records)
    return len(records)


def _rebuild_ledger(flows: set[int]) -> int:
    Receipt.objects.all().delete()
    Watermark.objects.all().delete()
    cutoff = clock.now() - dt.timedelta(hours=settings.LEDGERFLOW_WEBHOOK_KEY_RETENTION_HOURS)
    receipts: dict[tuple, Receipt] = {}
    marks: dict[tuple, Watermark] = {}

    def keep(flow_id, source, key, run_id, outcome, at, backfill=None):
        if flow_id not in flows or not key or (source == "webhook" and at < cutoff):
            return
        receipts.setdefault(
            (flow_id, source, key),
            Receipt(flow_id=flow_id, source=source, key=key, run_id=run_id, outcome=outcome,
                    at=at, backfill_id=backfill),
        )  # fmt: skip

    for event in Event.objects.filter(type="trigger.accepted").order_by("occurred_at", "id"):
        p = event.payload
        run_id = int(event.stream.split(":", 1)[1])
        keep(p["flow_id"], p["source"], p.get("key"), run_id, "started", event.occurred_at,
             p.get("backfill"))  # fmt: skip
        if p.get("entity") is not None and p["flow_id"] in flows:
            mark = marks.setdefault(
                (p["flow_id"], p["entity"]),
                Watermark(flow_id=p["flow_id"], entity=p["entity"], position=None),
            )
            if mark.position is None or is_older(mark.position, p["position"]):
                mark.position = p["position"]
    once = Event.objects.filter(stream__startswith="triggers:").order_by("occurred_at", "id")
    for event in once:
        p = event.payload
        outcome = event.type.split(".", 1)[1]
        if outcome == "stale" or p.get("detail", {}).get("once"):
            keep(p["flow_id"], p["source"], p.get("key"), None, outcome, event.occurred_at)
    Receipt.objects.bulk_create(receipts.values())
    Watermark.objects.bulk_create(marks.values())
    return len(receipts) + len(marks)
