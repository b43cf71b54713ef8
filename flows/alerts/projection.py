"""The incident and outbox rows: a projection of the ``alert.*`` events.

Streams: ``alert:flow:<flow id>`` holds a flow's incidents opening, folding
and closing (its head is the lock that makes "once per incident" hold when
two failures of one flow commit at once); ``alert:mail:<outbox id>`` holds
the delivery of one notification (each attempt started, failed, and its
sending), so a slow mail server holds no flow's lock. ``apply`` is the
only writer of the rows; ``rebuild`` replays the events through it.
"""

import datetime as dt
from collections.abc import Sequence

from flows.alerts.models import Incident, Outbox
from runs.ground.models import Event, Stream

EVENT_PREFIX = "alert."
OPENED, FOLDED, CLOSED = "alert.incident_opened", "alert.event_folded", "alert.incident_closed"
STARTED, FAILED, SENT = (
    "alert.delivery_started",
    "alert.delivery_failed",
    "alert.notification_sent",
)
FLOW_STREAM_PREFIX = "alert:flow:"
MAIL_STREAM_PREFIX = "alert:mail:"


def flow_stream(flow_id: int) -> str:
    return f"{FLOW_STREAM_PREFIX}{flow_id}"


def mail_stream(outbox_id: int) -> str:
    return f"{MAIL_STREAM_PREFIX}{outbox_id}"


def project(events: Sequence[Event]) -> None:
    """The live projector of alert events (registered in AlertsConfig)."""
    for event in events:
        apply(event)


def apply(event: Event) -> None:
    p = event.payload
    at = event.occurred_at
    if event.type == OPENED:
        incident = Incident.objects.create(
            id=p["incident_id"], flow_id=p["flow_id"], kind=p["kind"], signature=p["signature"],
            summary=p["summary"], opened_at=at, last_seen_at=at, events=1,
        )  # fmt: skip
        mail = p.get("outbox")
        if mail:
            Outbox.objects.create(
                id=mail["id"], incident=incident, recipients=mail["recipients"],
                subject=mail["subject"], body=mail["body"], created_at=at,
            )  # fmt: skip
    elif event.type == FOLDED:
        incident = Incident.objects.get(pk=p["incident_id"])
        incident.events += 1
        incident.last_seen_at = at
        incident.save(update_fields=["events", "last_seen_at"])
    elif event.type == CLOSED:
        Incident.objects.filter(pk=p["incident_id"]).update(
            closed_at=at, closed_by_run=p.get("run_id")
        )
    elif event.type == STARTED:
        Outbox.objects.filter(pk=p["outbox_id"]).update(
            attempts=p["attempt"], claimed_until=dt.datetime.fromisoformat(p["claimed_until"])
        )
    elif event.type == FAILED:
        Outbox.objects.filter(pk=p["outbox_id"]).update(
            claimed_until=None, last_error=p["error"][:500]
        )
    elif event.type == SENT:
        Outbox.objects.filter(pk=p["outbox_id"]).update(delivered_at=at, claimed_until=None)


def _apply_streams(prefix: str) -> None:
    names = Stream.objects.filter(name__startswith=prefix).values_list("name", flat=True)
    for name in sorted(names, key=lambda n: int(n.removeprefix(prefix))):
        for event in Event.objects.filter(stream=name).order_by("seq").iterator():
            apply(event)


def rebuild() -> int:
    """Derive every incident and outbox row again from the alert streams
    alone: a flow's incidents first, then their deliveries."""
    Outbox.objects.all().delete()
    Incident.objects.all().delete()
    _apply_streams(FLOW_STREAM_PREFIX)
    _apply_streams(MAIL_STREAM_PREFIX)
    return Incident.objects.count()
