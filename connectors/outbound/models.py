"""Rows of the outbound layer (tables of the ``connectors`` app): circuit
breakers and rate limits.

``Breaker`` is the projection of the ``breaker:<target>`` streams that pages
read (rebuilt by ``rebuild_projections``). ``BreakerCell``, ``RateBucket``
and ``StoreFault`` are working state, not facts: on the embedded default (no
Redis) the cells and buckets are where the shared counters live, changed by
compare-and-set on ``version``; ``StoreFault`` counts the calls that found
the shared store unreachable.

The models keep the ``connectors`` app label, so their tables and migration
history (``connectors/migrations``) stay as they were.
"""

from django.db import models


class Breaker(models.Model):
    """Projection: one row per external target whose breaker ever changed."""

    target = models.CharField(primary_key=True, max_length=200)
    state = models.CharField(max_length=20, default="closed")
    # Failures counted in the window when it last opened.
    failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True)
    probe_at = models.DateTimeField(null=True)  # when a probe call is allowed
    changed_at = models.DateTimeField()
    # The store's change counter: events may be appended out of the order the
    # store made the changes, so the projection keeps the highest version.
    version = models.PositiveBigIntegerField(default=0)

    class Meta:
        app_label = "connectors"
        ordering = ["target"]
        permissions = [("reset_breaker", "Can reset a circuit breaker")]

    def __str__(self) -> str:
        return f"{self.target} ({self.state})"


class BreakerCell(models.Model):
    """A breaker's live state on the embedded default (no Redis)."""

    target = models.CharField(primary_key=True, max_length=200)
    state = models.CharField(max_length=20, default="closed")
    failures = models.JSONField(default=list)  # failure times (epoch seconds) in the window
    opened_at = models.FloatField(null=True)
    probe_at = models.FloatField(null=True)
    probe_until = models.FloatField(null=True)  # a probe call is in flight until then
    next_release = models.FloatField(default=0)
    version = models.PositiveBigIntegerField(default=0)

    class Meta:
        app_label = "connectors"

    def __str__(self) -> str:
        return f"{self.target} ({self.state}, v{self.version})"


class RateBucket(models.Model):
    """A target's token bucket on the embedded default (no Redis)."""

    target = models.CharField(primary_key=True, max_length=200)
    tokens = models.FloatField()
    refilled_at = models.FloatField()
    next_free = models.FloatField(default=0)
    version = models.PositiveBigIntegerField(default=0)

    class Meta:
        app_label = "connectors"

    def __str__(self) -> str:
        return f"{self.target} ({self.tokens:.2f} tokens)"


class StoreFault(models.Model):
    """Calls that found the shared store (Redis) unreachable and went ahead
    as if every breaker were closed; shown on the Breakers page."""

    store = models.CharField(primary_key=True, max_length=50)
    count = models.PositiveBigIntegerField(default=0)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    last_error = models.TextField(blank=True)

    class Meta:
        app_label = "connectors"

    def __str__(self) -> str:
        return f"{self.store}: {self.count} faults"
