"""Incidents and the outbox of their notifications.

Both tables are projections of the ``alert.*`` events (``flows/alerts/projection.py``
is their only writer, live and on rebuild), except when an outbox row was last
handed to the delivery task (``enqueued_at``), which no event records: a
rebuild leaves it null.
"""

from django.db import models
from django.db.models import Q

from flows.models import Flow


class Kind(models.TextChoices):
    DEAD_LETTER = "dead_letter", "Dead letter"
    BREAKER = "breaker", "Breaker opened"
    SLA = "sla", "Approval SLA breached"


class Incident(models.Model):
    """One failure of one flow, (flow, signature), open until the flow next
    succeeds. Every further event of the same failure is folded in."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="incidents")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    signature = models.CharField(max_length=300)  # the key: a signature key, target or node
    summary = models.CharField(max_length=500)  # what it is, in words
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by_run = models.PositiveBigIntegerField(null=True, blank=True)
    events = models.PositiveIntegerField(default=1)  # how many events it folds in

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # The once-per-incident rule, kept by the database too.
            models.UniqueConstraint(
                fields=["flow", "signature"],
                condition=Q(closed_at__isnull=True),
                name="incident_open_once",
            ),
        ]
        indexes = [models.Index(fields=["flow", "closed_at"], name="incident_flow_open")]

    def __str__(self) -> str:
        return f"{self.flow_id}/{self.signature} ({'closed' if self.closed_at else 'open'})"

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


class Outbox(models.Model):
    """A notification to deliver, written in the transaction that opens its
    incident; the delivery task marks it delivered, the sweep re-sends the
    ones left behind."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="outbox")
    recipients = models.JSONField(default=list)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    # A delivery under way holds the row until then (alert.delivery_started);
    # another delivery of the row meanwhile sends nothing.
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    # When the row was last handed to the task (not projected: the sweep's
    # own bookkeeping).
    enqueued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["delivered_at", "created_at"], name="outbox_pending")]

    def __str__(self) -> str:
        return f"outbox {self.pk} ({'delivered' if self.delivered_at else 'pending'})"
