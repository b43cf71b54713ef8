"""The event store's tables: the log and the heads of its streams.

``Event`` is append-only: the model refuses updates and deletes, and on
PostgreSQL and SQLite a trigger refuses them in the database too (see the
runs app's migrations, which own these tables: the models keep the ``runs``
app label). ``Stream`` is the head of each stream: appends lock it, so a
stream's sequence numbers are gap-free and its hash chain is linear.
"""

from collections.abc import Iterable
from typing import Any, NoReturn

from django.db import models


class ImmutableEventError(Exception):
    """Raised on any attempt to change or remove a recorded event."""


class AppendOnlyQuerySet(models.QuerySet["Event"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise ImmutableEventError("events are append-only; they cannot be updated")

    def delete(self) -> NoReturn:
        raise ImmutableEventError("events are append-only; they cannot be deleted")

    def bulk_update(
        self, objs: Iterable["Event"], fields: Iterable[str], batch_size: int | None = None
    ) -> NoReturn:
        raise ImmutableEventError("events are append-only; they cannot be updated")


class Stream(models.Model):
    """The head of a stream: its last sequence number and hash.

    Locked by every append to the stream, so concurrent appends queue here.
    """

    name = models.CharField(primary_key=True, max_length=200)
    last_seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="")

    def __str__(self) -> str:
        return f"{self.name}@{self.last_seq}"


class Event(models.Model):
    stream = models.CharField(max_length=200)
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=100)
    # ``payload`` is for querying; ``body`` is the exact canonical text that was
    # hashed. Verification reads ``body`` because jsonb reorders keys and
    # normalises numbers.
    payload = models.JSONField()
    actor = models.CharField(max_length=200)
    occurred_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    body = models.TextField()

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "seq"], name="event_stream_seq"),
        ]
        indexes = [
            models.Index(fields=["type"], name="event_type"),
            models.Index(fields=["occurred_at"], name="event_occurred_at"),
        ]
        permissions = [("view_audit_log", "Can read the audit log")]

    def __str__(self) -> str:
        return f"{self.stream}#{self.seq} {self.type}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableEventError("events are append-only; they cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableEventError("events are append-only; they cannot be deleted")
