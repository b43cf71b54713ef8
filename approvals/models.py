"""Approval tasks (a projection of approval events on run streams) and the
business calendars that SLAs in business hours are counted in."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models


class TaskStatus(models.TextChoices):
    OPEN = "open", "Open"
    DECIDED = "decided", "Decided"
    CANCELLED = "cancelled", "Cancelled"
    ABANDONED = "abandoned", "Abandoned"  # dead-lettered by the flow's policy


class ApprovalTask(models.Model):
    """One request for a person's decision: the projection of the
    ``approval.*`` events of one (run, node, attempt). Written only by
    ``approvals.projection``, in the transaction that appends the event."""

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="approval_tasks")
    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="approval_tasks")
    node_id = models.CharField(max_length=64)
    attempt = models.PositiveIntegerField()
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    form = models.JSONField(default=list)  # the typed fields the reviewer fills in
    shows = models.JSONField(default=dict)  # the run's data the step shows
    assignee_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    assignee_group = models.ForeignKey(
        Group, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_at = models.DateTimeField(null=True)
    status = models.CharField(max_length=10, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    requested_at = models.DateTimeField()
    due_at = models.DateTimeField(null=True, db_index=True)
    # SLA and escalation as the node asked for them: {"hours", "clock"},
    # {"group", "hours", "clock", "then"}, reminder offsets in hours.
    sla = models.JSONField(default=dict)
    escalation = models.JSONField(default=dict)
    reminders = models.JSONField(default=list)
    remind_at = models.DateTimeField(null=True, db_index=True)
    reminders_sent = models.PositiveIntegerField(default=0)
    escalation_level = models.PositiveSmallIntegerField(default=0)
    escalated_at = models.DateTimeField(null=True)
    breaches = models.PositiveIntegerField(default=0)
    separation_of_duties = models.BooleanField(default=False)
    # Nobody decides two tasks of one run lineage (a four-eyes sign-off).
    distinct_deciders = models.BooleanField(default=False)
    comments = models.JSONField(default=list)
    decision = models.CharField(max_length=10, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_name = models.CharField(max_length=150, blank=True)  # a user or system:sla
    decided_at = models.DateTimeField(null=True)
    comment = models.TextField(blank=True)
    fields = models.JSONField(default=dict)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "node_id", "attempt"], name="approval_task_once"
            ),
        ]
        indexes = [models.Index(fields=["status", "due_at"], name="approval_open_due")]
        permissions = [
            ("decide_task", "Can claim and decide approval tasks"),
            ("manage_queues", "Can see every approval queue and reassign tasks"),
        ]

    def __str__(self) -> str:
        return f"approval {self.pk} {self.title} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status == TaskStatus.OPEN


class BusinessCalendar(models.Model):
    """A group's working time, for SLAs counted in business hours.

    Reference data like teams, not a run's state: an SLA's due time is
    computed once, when the task is requested or escalated, and stored in the
    event, so changing a calendar never moves a recorded due time."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="calendar")
    time_zone = models.CharField(max_length=64, default="UTC")
    # {"mon": [["09:00", "17:00"]], ...}; a missing day is closed.
    opening_hours = models.JSONField(default=dict)
    holidays = models.JSONField(default=list)  # ["2026-12-25", ...]

    def __str__(self) -> str:
        return f"calendar of {self.group.name} ({self.time_zone})"
