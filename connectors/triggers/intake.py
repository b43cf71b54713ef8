"""The one path from a trigger delivery to a started run.

Every trigger (webhook, schedule, event, queue) hands a ``Delivery`` to
``deliver``. A keyed delivery first inserts its ``Receipt`` (unique per flow,
source and key) in the transaction that starts the run: a racing duplicate
waits on that insert and, once the first commits, fails on the constraint and
answers with the first run. Deliveries that start nothing are events on the
flow's ``triggers:<id>`` stream, projected to ``DeliveryRecord`` rows.
"""

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from connectors.triggers.models import DeliveryRecord, Receipt, SeenSignature, Watermark
from runs import driver
from runs.ground import clock
from runs.ground.eventstore import append
from runs.ground.logcontext import log_context
from runs.ground.models import Event

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    flow: Any  # flows.models.Flow
    source: str  # webhook, schedule, event, queue
    input: Any
    actor: str
    key: str | None = None
    # Ordering: the entity the delivery is about and its version/timestamp.
    entity: str | None = None
    position: Any = None
    # A refused schedule fire or event is final (recorded once, never retried);
    # a refused webhook may be sent again once the flow is resumed.
    final_refusal: bool = False
    detail: dict = field(default_factory=dict)
    # A schedule fire made by a backfill: its receipt names the backfill.
    backfill: int | None = None


@dataclass
class Outcome:
    status: str  # started, duplicate, refused, stale, skipped
    run_id: int | None = None
    message: str = ""
    first_outcome: str = ""  # a duplicate's first delivery: started, stale, ...
    flow_status: str = ""
    # A started run's state as its start committed it (runs.decider.RunState):
    # the outputs of the steps that ran inline, read without a query.
    run_state: Any = None


def trigger_stream(flow_id: int) -> str:
    return f"triggers:{flow_id}"


def deliver(delivery: Delivery) -> Outcome:
    with log_context(flow=delivery.flow.slug):
        outcome = _deliver(delivery)
        if outcome.status == "started":
            with log_context(run_id=outcome.run_id):
                log.info("%s delivery started run %s", delivery.source, outcome.run_id)
        return outcome


def _deliver(delivery: Delivery) -> Outcome:
    flow = delivery.flow
    if flow.run_refusal:  # draft, paused or retired: recorded, no run
        return _refuse(delivery, flow.run_refusal)
    try:
        with transaction.atomic():
            receipt = _claim(delivery, "started")
            if delivery.entity is not None and _is_stale(delivery):
                record = _record(
                    delivery, "stale", {"entity": delivery.entity, "position": delivery.position}
                )
                if receipt is not None:
                    _settle(receipt, outcome="stale", at=record.at)
                return Outcome("stale", message="a newer delivery for this entity was seen")
            run = driver.start_run(
                flow=flow,
                input=delivery.input,
                actor=delivery.actor,
                extra_events=[("trigger.accepted", _accepted_payload(delivery))],
            )
            if receipt is not None:
                _settle(receipt, run_id=run.pk, at=run.created_at)
            return Outcome("started", run_id=run.pk, run_state=run.state)
    except IntegrityError:
        first = _first(delivery)
        if first is None:
            raise
        return Outcome("duplicate", run_id=first.run_id, first_outcome=first.outcome)
    except driver.StartRefused as exc:
        return _refuse(delivery, str(exc))


def record_without_run(delivery: Delivery, outcome: str, reason: str) -> Outcome:
    """A keyed delivery that deliberately starts nothing (a skipped fire):
    its receipt and its record commit together, once."""
    try:
        with transaction.atomic():
            receipt = _claim(delivery, outcome)
            record = _record(delivery, outcome, {"reason": reason, "once": True})
            _settle(receipt, at=record.at)
    except IntegrityError:
        first = _first(delivery)
        return Outcome(
            "duplicate",
            run_id=first.run_id if first else None,
            first_outcome=first.outcome if first else "",
        )
    return Outcome(outcome, message=reason)


def record(flow, source: str, outcome: str, *, key: str = "", detail: dict, actor: str) -> None:
    """Record a delivery that never reached ``deliver`` (a poison message)."""
    delivery = Delivery(flow=flow, source=source, input=None, actor=actor, key=key or None)
    with transaction.atomic():
        _record(delivery, outcome, detail)


def _refuse(delivery: Delivery, reason: str) -> Outcome:
    flow = delivery.flow
    if delivery.final_refusal and delivery.key:
        outcome = record_without_run(delivery, "refused", reason)
        if outcome.status == "duplicate":
            return outcome
    else:
        with transaction.atomic():
            _record(delivery, "refused", {"reason": reason, "flow_status": flow.status})
    return Outcome("refused", message=reason, flow_status=flow.status)


def _claim(delivery: Delivery, outcome: str) -> Receipt | None:
    if not delivery.key:
        return None
    return Receipt.objects.create(
        flow=delivery.flow,
        source=delivery.source,
        key=delivery.key,
        outcome=outcome,
        at=clock.now(),
        backfill_id=delivery.backfill,
    )


def _settle(receipt: Receipt, **fields) -> None:
    # The receipt takes the time of the event that records its outcome, so a
    # rebuild from the log derives the same row.
    Receipt.objects.filter(pk=receipt.pk).update(**fields)


def _first(delivery: Delivery) -> Receipt | None:
    return Receipt.objects.filter(
        flow=delivery.flow, source=delivery.source, key=delivery.key
    ).first()


def is_older(position: Any, than: Any) -> bool:
    """Numbers compare as numbers; anything else (ISO timestamps) as text."""
    numbers = (int, float)
    if isinstance(position, numbers) and isinstance(than, numbers):
        return position < than
    return str(position) < str(than)


def _is_stale(delivery: Delivery) -> bool:
    # The entity's row is locked until commit, so two deliveries for one
    # entity decide one after the other and the older cannot overtake.
    Watermark.objects.bulk_create(
        [Watermark(flow=delivery.flow, entity=delivery.entity, position=None)],
        ignore_conflicts=True,
    )
    mark = Watermark.objects.select_for_update().get(flow=delivery.flow, entity=delivery.entity)
    if mark.position is not None and is_older(delivery.position, mark.position):
        return True
    if mark.position is None or is_older(mark.position, delivery.position):
        Watermark.objects.filter(pk=mark.pk).update(position=delivery.position)
    return False


def _accepted_payload(delivery: Delivery) -> dict:
    payload = {"flow_id": delivery.flow.pk, "source": delivery.source, "key": delivery.key}
    if delivery.entity is not None:
        payload.update(entity=delivery.entity, position=delivery.position)
    if delivery.backfill is not None:
        payload["backfill"] = delivery.backfill
    return payload


def record_from(event: Event) -> DeliveryRecord:
    """The delivery record of a ``delivery.*`` event: written live here and
    by the rebuild (connectors/triggers/projection.py) alike."""
    payload = event.payload
    return DeliveryRecord(
        flow_id=payload["flow_id"],
        seq=event.seq,
        source=payload["source"],
        outcome=event.type.split(".", 1)[1],
        key=payload.get("key", ""),
        detail=payload.get("detail", {}),
        at=event.occurred_at,
    )


def _record(delivery: Delivery, outcome: str, detail: dict) -> DeliveryRecord:
    payload = {
        "flow_id": delivery.flow.pk,
        "source": delivery.source,
        "key": delivery.key or "",
        "detail": {**delivery.detail, **detail},
    }
    event = append(
        trigger_stream(delivery.flow.pk), f"delivery.{outcome}", payload, actor=delivery.actor
    )
    record = record_from(event)
    record.save(force_insert=True)
    return record


def remember_signature(flow, signature: str) -> bool:
    """False if this signature was already used: a replayed delivery."""
    try:
        with transaction.atomic():
            SeenSignature.objects.create(flow=flow, signature=signature, at=clock.now())
    except IntegrityError:
        return False
    return True


def purge(now: dt.datetime) -> dict[str, int]:
    """Forget webhook keys past the retention window, and signatures past
    the longest tolerance (they are refused as stale by then anyway)."""
    hours = settings.LEDGERFLOW_WEBHOOK_KEY_RETENTION_HOURS
    keys, _ = Receipt.objects.filter(
        source="webhook", at__lt=now - dt.timedelta(hours=hours)
    ).delete()
    signatures, _ = SeenSignature.objects.filter(at__lt=now - dt.timedelta(hours=2)).delete()
    return {"webhook_keys": keys, "signatures": signatures}


def recent_records(flow, limit: int = 10):
    return DeliveryRecord.objects.filter(flow=flow).order_by("-at", "-seq")[:limit]
