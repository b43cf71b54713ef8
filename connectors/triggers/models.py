"""Rows of the trigger side.

``Binding``, ``Receipt``, ``Watermark``, ``DeliveryRecord`` and ``Backfill``
are projections: ``connectors.triggers.projection.rebuild`` derives them from the
event log alone. ``SeenSignature`` is not: it is a short-lived replay guard
(a signature is refused while its timestamp is within tolerance), purged by
the trigger sweep, and losing it only re-opens that window.
"""

from django.db import models


class Binding(models.Model):
    """The trigger of a flow's newest published version, and the topics its
    graph publishes to: what the webhook URL, the schedule sweep, the event
    bus, the queue consumer and the Topics page look up."""

    flow = models.OneToOneField(
        "flows.Flow", primary_key=True, on_delete=models.CASCADE, related_name="trigger_binding"
    )
    version_number = models.PositiveIntegerField()
    kind = models.CharField(max_length=20)  # webhook, schedule, event, queue, manual
    node_id = models.CharField(max_length=64)
    config = models.JSONField(default=dict)
    topic = models.CharField(max_length=200, blank=True, db_index=True)
    queue = models.CharField(max_length=200, blank=True, db_index=True)
    publishes = models.JSONField(default=list)
    respond_node = models.CharField(max_length=64, blank=True)
    # The webhook URL's secret part; kept across versions, changed by rotation.
    token = models.CharField(max_length=64, null=True, blank=True, unique=True)
    # When this version was published: where a schedule starts counting.
    since = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.flow_id}: {self.kind}"


class Receipt(models.Model):
    """The dedup ledger: one row per (flow, source, key) that has been acted
    on, written in the transaction that starts the run (or records why none
    started). The unique constraint is what makes a second delivery, a second
    beat or a redelivered message start nothing."""

    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="receipts")
    source = models.CharField(max_length=10)  # webhook, schedule, event, queue
    key = models.CharField(max_length=255)
    run_id = models.BigIntegerField(null=True)
    outcome = models.CharField(max_length=20)  # started, stale, skipped, refused
    at = models.DateTimeField(db_index=True)
    # The backfill that fired this instant (a schedule key only); None for a
    # live fire. The live sweep's cursor reads live receipts only
    # (connectors/triggers/schedules.py, ``_cursor``).
    backfill_id = models.BigIntegerField(null=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["flow", "source", "key"], name="receipt_once"),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.key} -> {self.outcome}"


class Watermark(models.Model):
    """The newest ordering value accepted per (flow, entity); a delivery
    older than it is stale. Locked while a delivery for the entity decides."""

    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="watermarks")
    entity = models.CharField(max_length=255)
    position = models.JSONField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["flow", "entity"], name="watermark_entity"),
        ]

    def __str__(self) -> str:
        return f"{self.entity} at {self.position}"


class DeliveryRecord(models.Model):
    """A delivery that started no run (refused, stale, skipped, dead-lettered):
    the projection of the ``triggers:<flow id>`` stream."""

    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="deliveries")
    seq = models.PositiveBigIntegerField()
    source = models.CharField(max_length=10)
    outcome = models.CharField(max_length=20)
    key = models.CharField(max_length=255, blank=True)
    detail = models.JSONField(default=dict)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-seq"]
        constraints = [
            models.UniqueConstraint(fields=["flow", "seq"], name="delivery_record_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.outcome} {self.key}"


class SeenSignature(models.Model):
    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="+")
    signature = models.CharField(max_length=128)
    at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["flow", "signature"], name="signature_once"),
        ]

    def __str__(self) -> str:
        return self.signature


class Backfill(models.Model):
    """A run of a scheduled flow over past fire times, throttled to
    ``max_in_flight`` runs at a time: the projection of the
    ``backfill:<id>`` stream (requested, then cancelled or finished).

    Its progress (started, finished, failed, pending) is read from the
    receipts and runs it started, not kept here: each of its runs commits on
    its own stream, and none of them writes this row."""

    ACTIVE, CANCELLED, FINISHED = "active", "cancelled", "finished"

    id = models.BigAutoField(primary_key=True)
    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="backfills")
    requested_by = models.CharField(max_length=200)
    requested_at = models.DateTimeField()
    # The range the operator asked for, and its last instant the backfill
    # may fire (the live sweep's cursor at the request, if earlier): UTC.
    start = models.DateTimeField()
    end = models.DateTimeField()
    until = models.DateTimeField()
    # The schedule as it was when requested: the plan does not change if a
    # new version changes the cron.
    cron = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64)
    max_in_flight = models.PositiveIntegerField()
    planned = models.PositiveIntegerField()  # fire times in [start, until]
    already = models.PositiveIntegerField()  # of those, recorded before the request
    status = models.CharField(max_length=20, default=ACTIVE, db_index=True)
    ended_at = models.DateTimeField(null=True)
    ended_by = models.CharField(max_length=200, blank=True)
    summary = models.JSONField(default=dict)  # counts when it finished

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"backfill {self.pk} ({self.status})"

    @property
    def stream(self) -> str:
        return f"backfill:{self.pk}"
