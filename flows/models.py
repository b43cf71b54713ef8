"""The inventory: every automation, in Ledgerflow or outside it.

``Flow`` rows are a projection of the events on each flow's stream
(``flow:<id>``); only ``flows.projection`` writes them.
"""

import datetime as dt

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models

from connectors.base import installed
from flows.graph import connector_types
from runs.ground import clock


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="teams")
    # When set, only the team's members (and admins) may edit the team's flows.
    restricts_edits = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Criticality(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Status(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    RETIRED = "retired", "Retired"


class Kind(models.TextChoices):
    LEDGERFLOW = "ledgerflow", "Runs in Ledgerflow"
    EXTERNAL = "external", "Runs elsewhere"


def alert_addresses(text: str) -> list[str]:
    """The addresses of an ``alert_to`` text: comma- or semicolon-separated."""
    found: list[str] = []
    for raw in (text or "").replace(";", ",").split(","):
        address = raw.strip()
        if address and address not in found:
            found.append(address)
    return found


def validate_alert_to(text: str) -> None:
    for address in alert_addresses(text):
        try:
            validate_email(address)
        except ValidationError:
            shown = address if len(address) <= 60 else address[:57] + "…"
            raise ValidationError(f"“{shown}” is not an email address.", code="invalid") from None


CRITICALITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class Flow(models.Model):
    name = models.CharField(max_length=150)
    slug = models.SlugField(max_length=150, unique=True)
    purpose = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.LEDGERFLOW)
    external_platform = models.CharField(max_length=100, blank=True)
    external_url = models.URLField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_flows",
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="flows"
    )
    criticality = models.CharField(
        max_length=10, choices=Criticality.choices, default=Criticality.MEDIUM
    )
    runbook = models.TextField(blank=True)
    # Where this flow's failures are mailed: comma-separated addresses;
    # blank means the owner's address (alerts/recipients.py).
    alert_to = models.CharField(max_length=500, blank=True, validators=[validate_alert_to])
    failure_mode = models.TextField(blank=True)
    review_cadence_days = models.PositiveIntegerField(default=90)
    last_reviewed_on = models.DateField(null=True, blank=True)
    last_reviewed_by = models.CharField(max_length=150, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    tags = models.JSONField(default=list, blank=True)
    external_systems = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    # The graph being edited; publishing copies it into an immutable version.
    draft_graph = models.JSONField(null=True, blank=True)
    published_version = models.PositiveIntegerField(default=0)
    # Seq of the last event folded into this row: the projection's position.
    version = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("audit_inventory", "Can audit the inventory"),
            ("manage_teams", "Can manage teams"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def stream(self) -> str:
        return f"flow:{self.pk}"

    @property
    def review_due_on(self) -> dt.date:
        start = self.last_reviewed_on or self.created_at.date()
        return start + dt.timedelta(days=self.review_cadence_days)

    @property
    def review_overdue(self) -> bool:
        return self.status != Status.RETIRED and self.review_due_on < clock.now().date()

    @property
    def missing_facts(self) -> list[str]:
        """Codes of the inventory facts an active flow must have but this lacks."""
        missing = []
        if self.owner_id is None:
            missing.append("owner")
        elif not self.owner.is_active:
            missing.append("active_owner")
        if not self.runbook.strip():
            missing.append("runbook")
        if not self.failure_mode.strip():
            missing.append("failure_mode")
        return missing

    @property
    def activation_blockers(self) -> list[str]:
        """What the flow lacks before it may be activated, in words."""
        words = {
            "owner": "an owner",
            "active_owner": f"an active owner ({self.owner.username} is deactivated)"
            if self.owner_id
            else "",
            "runbook": "a runbook",
            "failure_mode": "a failure mode",
        }
        return [words[code] for code in self.missing_facts]

    @property
    def missing_connectors(self) -> list[str]:
        """The connectors the published version names that this installation
        has not registered (a demo connector with ``LEDGERFLOW_DEMO`` off)."""
        if not self.published_version:
            return []
        types = version_connector_types(self.pk, self.published_version)
        return sorted(key for key in types if not installed(key))

    @property
    def run_refusal(self) -> str:
        """Why this flow starts no runs, or "" when it does. Only an active
        flow runs: activation is the gate that checks owner, runbook and
        failure mode, and every start (trigger, page, command, sub-flow,
        replay) passes through it. Nor does a flow whose published version
        names a connector that is not installed: its steps could not run."""
        missing = self.missing_connectors
        if missing:
            names = _join_words([f"“{key}”" for key in missing])
            return f"“{self.name}” uses {names}, not installed here; it starts no runs."
        if self.status == Status.ACTIVE:
            return ""
        if self.status != Status.DRAFT:
            return f"“{self.name}” is {self.status}; it starts no runs."
        blockers = self.activation_blockers
        needs = f" (it needs {_join_words(blockers)} first)" if blockers else ""
        return f"“{self.name}” is a draft; it starts no runs until it is activated{needs}."


# Versions are immutable: a process reads each one's connector types once
# (every run start and trigger delivery asks ``run_refusal``).
_version_types: dict[tuple[int, int], frozenset[str]] = {}


def version_connector_types(flow_id: int, number: int) -> frozenset[str]:
    key = (flow_id, number)
    if key not in _version_types:
        version = FlowVersion.objects.filter(flow_id=flow_id, number=number).first()
        if version is None:
            return frozenset()  # not kept: it may yet be published
        _version_types[key] = connector_types(version.graph)
    return _version_types[key]


def _join_words(items: list[str]) -> str:
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


class FlowVersion(models.Model):
    """An immutable published graph. Runs are pinned to one."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    graph = models.JSONField()
    graph_hash = models.CharField(max_length=64)
    published_by = models.CharField(max_length=200)
    published_at = models.DateTimeField()
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["flow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["flow", "number"], name="flow_version_number"),
        ]

    def __str__(self) -> str:
        return f"{self.flow.slug} v{self.number}"


class DraftSnapshot(models.Model):
    """An immutable, unnumbered copy of a draft, pinned by a test run.

    Keyed by (flow, graph hash): test runs of an unchanged draft share one,
    and editing the draft afterwards cannot change what a test run ran.
    Never a published version: it has no number and production starts never
    see it."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="snapshots")
    graph_hash = models.CharField(max_length=64)
    graph = models.JSONField()
    pinned_by = models.CharField(max_length=200)
    pinned_at = models.DateTimeField()

    class Meta:
        ordering = ["flow", "-pinned_at"]
        constraints = [
            models.UniqueConstraint(fields=["flow", "graph_hash"], name="draft_snapshot_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.flow.slug} draft {self.graph_hash[:10]}"
