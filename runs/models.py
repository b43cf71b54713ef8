"""The run projections (runs, steps, timers) and platform liveness rows.

The event log's own tables (``Event``, ``Stream``) live in the ground layer
(``runs/ground/models.py``); they are imported here so that Django registers
them with this app, whose migrations create them.
"""

import datetime as dt
from typing import Any

from django.db import models

from runs.ground.models import Event, ImmutableEventError, Stream

__all__ = [
    "ChainCheckpoint", "DeadLetterAssignment", "DeadLetterNote", "Event", "Heartbeat",
    "ImmutableEventError", "Run", "Step", "Stream", "Timer",
]  # fmt: skip


class Heartbeat(models.Model):
    """When each platform process was last seen working (for /readyz)."""

    process = models.CharField(primary_key=True, max_length=50)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.process} seen {self.seen_at:%Y-%m-%d %H:%M:%S}"


class ChainCheckpoint(models.Model):
    """How far each stream's hash chain has been verified, by (stream, seq).

    Bookkeeping of the verifier, like a heartbeat, not a projection: no event
    says "verified", and a rebuild that dropped these rows would only make
    the next ticks verify again from the start. Event ids commit out of
    order, so progress is per stream and by seq, never "up to event N".
    """

    stream = models.CharField(primary_key=True, max_length=200)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    verified_at = models.DateTimeField()
    # Set once when the chain breaks: the break is alerted then, and the
    # stream is not verified again until someone repairs it and clears this.
    broken_seq = models.PositiveBigIntegerField(null=True, blank=True)
    broken_reason = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["broken_seq"], name="checkpoint_broken")]

    def __str__(self) -> str:
        return f"{self.stream} verified to {self.seq}"


class Run(models.Model):
    """Projection of a run's stream (``run:<id>``); written only by the driver."""

    flow = models.ForeignKey("flows.Flow", on_delete=models.PROTECT, related_name="runs")
    # Pinned by number: versions are immutable, and a rebuild keeps numbers.
    # A test run has 0 here and names its draft snapshot by graph hash.
    version_number = models.PositiveIntegerField()
    # A test run of the draft (from its ``run.started``): kept out of the
    # inventory's figures and the dead-letter queue.
    is_test = models.BooleanField(default=False)
    test_snapshot = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=20, default="pending", db_index=True)
    input = models.JSONField(null=True)
    output = models.JSONField(null=True)
    error = models.TextField(blank=True)
    root_run_id = models.BigIntegerField(null=True)
    # The first run of its lineage: resumed, replayed-as-new and sub-flow runs
    # share it with the run they came from. Separation of duties spans it;
    # ``root_run_id`` keys side effects and changes on a replay.
    lineage_id = models.BigIntegerField(null=True, db_index=True)
    replay_of_id = models.BigIntegerField(null=True)
    # A sub-flow's run: the step that started it, and that step's idempotency
    # key, unique so that a retried step cannot start a second child.
    parent_run_id = models.BigIntegerField(null=True, db_index=True)
    parent_node = models.CharField(max_length=64, blank=True)
    parent_key = models.CharField(max_length=64, blank=True)
    started_by = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)
    # The flow's concurrency key rendered from this run's trigger ("" when the
    # flow has none): runs with equal keys run one at a time, by id.
    concurrency_key = models.CharField(max_length=200, blank=True)
    # Why the run as a whole waits: "concurrency" while queued behind an
    # earlier run with its key.
    wait_reason = models.CharField(max_length=20, blank=True)
    # The flow's business key rendered at start (settings.business_key: an
    # order id, a customer), so "where is order A-1?" is an exact lookup.
    business_key = models.CharField(max_length=200, blank=True)
    # The flow's last successful run when this one started, for expressions
    # (``last_success``); recorded in run.started. Null when none or unread.
    last_success = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["flow", "-id"], name="run_flow_recent"),
            # The runs list pages newest first by (created_at, id) with keyset
            # cursors, across flows, by status or by flow (runs/selectors.py).
            models.Index(fields=["-created_at", "-id"], name="run_recent"),
            models.Index(fields=["status", "-created_at", "-id"], name="run_status_recent"),
            models.Index(fields=["flow", "-created_at", "-id"], name="run_flow_created"),
            models.Index(
                fields=["business_key", "-created_at", "-id"],
                name="run_business_key",
                condition=~models.Q(business_key=""),
            ),
            models.Index(fields=["flow", "concurrency_key", "id"], name="run_concurrency_queue"),
            # The sweep looks for queued runs every tick: index only those.
            models.Index(
                fields=["wait_reason"], name="run_queued", condition=~models.Q(wait_reason="")
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["parent_key"],
                condition=~models.Q(parent_key=""),
                name="run_one_child_per_parent_key",
            )
        ]
        # view_run and change_run are Django's defaults; the roles use them.

    # Not a column: the run's state (runs.decider.RunState) as the commit
    # that started it in this process left it, set by ``start_run``: what
    # its inline steps did, for a caller that answers from it (a webhook's
    # Respond step) without reading the rows back. None when loaded.
    state: Any = None

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"

    @property
    def stream(self) -> str:
        return f"run:{self.pk}"


class Step(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    node_id = models.CharField(max_length=64)
    position = models.PositiveIntegerField(default=0)  # topological order
    connector = models.CharField(max_length=100)
    status = models.CharField(max_length=20, default="pending")
    attempt = models.PositiveIntegerField(default=0)
    revision = models.PositiveIntegerField(default=0)
    port = models.CharField(max_length=50, blank=True)
    input = models.JSONField(null=True)
    output = models.JSONField(null=True)
    error = models.TextField(blank=True)
    errors = models.JSONField(default=list)
    idempotency_key = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True)
    due_at = models.DateTimeField(null=True)
    wait_reason = models.CharField(max_length=20, blank=True)
    # The breaker or rate-limit target a held step waits on (Breakers page).
    wait_target = models.CharField(max_length=200, blank=True)
    outcome_unknown = models.BooleanField(default=False)
    # A loop's finished iterations, {"<index>": output}.
    iterations = models.JSONField(default=dict)
    scheduled_at = models.DateTimeField(null=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    # Not projected: the recovery sweep's own bookkeeping of the messages it
    # re-sent for this step while it stayed scheduled (runs/sweeper.py). No
    # event records a re-send, so a rebuild leaves these at null and 0.
    # ``scheduled_at`` cannot serve: it is projected from ``step.scheduled``.
    redispatched_at = models.DateTimeField(null=True)
    redispatches = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "node_id"], name="step_run_node"),
        ]
        indexes = [
            models.Index(fields=["status", "lease_until"], name="step_status_lease"),
            models.Index(fields=["status", "scheduled_at"], name="step_status_scheduled"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.node_id} ({self.status})"

    @property
    def took(self) -> dt.timedelta | None:
        """How long its last attempt ran, once it finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class Timer(models.Model):
    """A step waiting for a time (a delay, a retry's due time). The sweep
    fires it by deleting the row in the transaction that moves the step on,
    so two sweepers cannot fire one timer twice."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="timers")
    node_id = models.CharField(max_length=64)
    attempt = models.PositiveIntegerField()
    kind = models.CharField(max_length=20)
    due_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "node_id", "attempt", "kind"], name="timer_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.run_id}/{self.node_id}@{self.due_at:%H:%M:%S}"


class DeadLetterAssignment(models.Model):
    """Projection of ``deadletter.assigned`` events (``deadletter:<run>:<node>``
    streams): who looks after a dead letter. Plain ids, not foreign keys, so
    that rebuilding the runs does not cascade into these rows."""

    run_id = models.BigIntegerField()
    node_id = models.CharField(max_length=64)
    assignee = models.CharField(max_length=150)
    assigned_by = models.CharField(max_length=200)
    assigned_at = models.DateTimeField()

    class Meta:
        ordering = ["run_id", "node_id"]
        constraints = [
            models.UniqueConstraint(fields=["run_id", "node_id"], name="dead_letter_one_assignee"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.node_id} → {self.assignee}"


class DeadLetterNote(models.Model):
    """Projection of ``deadletter.annotated`` events: an operator's note."""

    run_id = models.BigIntegerField()
    node_id = models.CharField(max_length=64)
    seq = models.PositiveIntegerField()  # the event's place in its stream
    text = models.TextField()
    actor = models.CharField(max_length=200)
    written_at = models.DateTimeField()

    class Meta:
        ordering = ["run_id", "node_id", "seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["run_id", "node_id", "seq"], name="dead_letter_note_seq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.node_id} note {self.seq}"
