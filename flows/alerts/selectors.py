"""Reads of the incidents for pages."""

from django.db.models import QuerySet

from flows.alerts.models import Incident
from flows.models import Flow

LIMIT = 50


def open_incidents(flow: Flow | None = None) -> QuerySet[Incident]:
    """The open incidents, newest first (at most ``LIMIT``)."""
    incidents = Incident.objects.filter(closed_at__isnull=True).select_related("flow")
    if flow is not None:
        incidents = incidents.filter(flow=flow)
    return incidents.order_by("-opened_at", "-id")[:LIMIT]
