"""The writes of the alerts app, each an event recorded before its rows
change (``flows/alerts/projection.py`` projects them in the same transaction).

- ``failure_seen``: a failure of a flow opens an incident, or is folded into
  the open one of the same signature (once per incident, not per event);
- ``flow_succeeded``: a succeeded run closes the flow's open incidents;
- ``deliver``: mail one outbox row once, recording each attempt;
- ``sweep``: re-enqueue outbox rows left undelivered.

The once-per-incident decision is taken under the lock of the flow's alert
stream head, so two failures committing at once cannot both open one.
"""

import datetime as dt
import logging
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse

from flows.alerts import projection
from flows.alerts.models import Incident, Kind, Outbox
from flows.alerts.recipients import recipients_of
from flows.models import Flow
from flows.services import next_row_id
from runs.ground import clock, projectors
from runs.ground.eventstore import append, lock_head

log = logging.getLogger(__name__)
ACTOR = "system:alerts"
# An undelivered notification older than this is re-enqueued by the sweep.
SWEEP_AFTER = dt.timedelta(minutes=1)
SWEEP_BATCH = 200
DELIVER_TASK = "flows.alerts.tasks.deliver_alert"


@dataclass(frozen=True)
class Failure:
    """One event that says a flow failed."""

    flow_id: int
    kind: str  # a Kind
    signature: str  # what makes two failures the same one
    summary: str  # the signature in words
    detail: str  # this occurrence (an error text, a run and node)
    source: dict  # where it was recorded: {"stream": ..., "seq": ...}


def failure_seen(failure: Failure) -> Incident:
    """Open an incident for ``failure``, or fold it into the open one."""
    with transaction.atomic():
        stream = projection.flow_stream(failure.flow_id)
        lock_head(stream)
        open_one = Incident.objects.filter(
            flow_id=failure.flow_id, signature=failure.signature, closed_at__isnull=True
        ).first()
        if open_one is not None:
            _record(stream, projection.FOLDED, {
                "incident_id": open_one.pk, "flow_id": failure.flow_id,
                "detail": failure.detail[:500], "source": failure.source,
            })  # fmt: skip
            return Incident.objects.get(pk=open_one.pk)
        incident_id = next_row_id(Incident)
        mail = _notification(failure)
        _record(stream, projection.OPENED, {
            "incident_id": incident_id, "flow_id": failure.flow_id, "kind": failure.kind,
            "signature": failure.signature, "summary": failure.summary[:500],
            "detail": failure.detail[:500], "source": failure.source, "outbox": mail,
        })  # fmt: skip
        if mail is not None:
            enqueue_on_commit(mail["id"])
        return Incident.objects.get(pk=incident_id)


def flow_succeeded(flow_id: int, run_id: int) -> int:
    """Close every open incident of the flow; how many were open."""
    # Most successes find nothing open: they read, and take no lock, so the
    # runs of a busy flow do not queue on its alert stream.
    if not Incident.objects.filter(flow_id=flow_id, closed_at__isnull=True).exists():
        return 0
    with transaction.atomic():
        stream = projection.flow_stream(flow_id)
        lock_head(stream)
        ids = list(
            Incident.objects.filter(flow_id=flow_id, closed_at__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for incident_id in ids:
            _record(stream, projection.CLOSED, {
                "incident_id": incident_id, "flow_id": flow_id, "run_id": run_id,
            })  # fmt: skip
        return len(ids)


def _record(stream: str, type_: str, payload: dict) -> None:
    projectors.project([append(stream, type_, payload, actor=ACTOR)])


def _notification(failure: Failure) -> dict | None:
    """The outbox row's content, recorded with the opening (so a rebuild
    restores what was to be sent, to whom)."""
    flow = Flow.objects.select_related("owner").get(pk=failure.flow_id)
    to = recipients_of(flow)
    if not to:
        log.warning("flow %s: incident opened but no one to mail (no alert_to, owner "
                    "without an email address)", flow.slug)  # fmt: skip
        return None
    base = settings.LEDGERFLOW_BASE_URL.rstrip("/")
    kind = Kind(failure.kind).label
    context = {
        "flow": flow, "kind": kind, "summary": failure.summary, "detail": failure.detail,
        "flow_url": base + reverse("flows:detail", args=[flow.slug]),
        "dead_letters_url": base + reverse("runs:dead_letters"),
    }  # fmt: skip
    subject = f"[Ledgerflow] Incident on {flow.name}: {kind}"
    return {
        "id": next_row_id(Outbox),
        "recipients": to,
        "subject": subject[:300],
        "body": render_to_string("alerts/email.txt", context),
    }


# --- delivery -------------------------------------------------------------------


def enqueue_on_commit(outbox_id: int) -> None:
    """After commit (a rolled-back incident mails no one), hand the row to
    the delivery task. A lost message is found by ``sweep``."""
    transaction.on_commit(lambda: enqueue(outbox_id))


def enqueue(outbox_id: int) -> None:
    Outbox.objects.filter(pk=outbox_id).update(enqueued_at=clock.now())
    try:
        # By name (the tasks import this module); an eager test
        # configuration runs it in place.
        current_app.tasks[DELIVER_TASK].delay(outbox_id)
    except Exception:  # the caller's work is committed: the sweep sends it later
        log.exception("could not enqueue the delivery of alert outbox row %s", outbox_id)


def deliver(outbox_id: int) -> bool:
    """Mail one outbox row unless it is delivered or a delivery of it is
    under way; True if this call sent it.

    Write before effect, as a step is: ``alert.delivery_started`` claims the
    row (compare-and-set under its lock) and commits before the mail server
    is called, outside any transaction; ``alert.notification_sent`` commits
    after it answered. A refusal records ``alert.delivery_failed``, frees
    the row and goes up to the task, which retries. A duplicate task meets
    the claim or the delivered row and sends nothing. A process that dies
    mid-send leaves a claim that lapses after the lease; the sweep then
    sends again: at least once, and twice only across such a death."""
    now = clock.now()
    lease = dt.timedelta(seconds=settings.LEDGERFLOW_ALERT_DELIVERY_LEASE_SECONDS)
    stream = projection.mail_stream(outbox_id)
    with transaction.atomic():
        row = (
            Outbox.objects.select_for_update()
            .filter(pk=outbox_id, delivered_at__isnull=True)
            .first()
        )
        if row is None or (row.claimed_until is not None and row.claimed_until > now):
            return False
        attempt = row.attempts + 1
        _record(stream, projection.STARTED, {
            "outbox_id": row.pk, "attempt": attempt,
            "claimed_until": (now + lease).isoformat(),
        })  # fmt: skip
    try:
        send_mail(row.subject, row.body, settings.DEFAULT_FROM_EMAIL, row.recipients)
    except Exception as exc:
        with transaction.atomic():
            _record(stream, projection.FAILED, {
                "outbox_id": row.pk, "attempt": attempt, "error": str(exc)[:500],
            })  # fmt: skip
        raise
    with transaction.atomic():
        _record(stream, projection.SENT, {
            "outbox_id": row.pk, "incident_id": row.incident_id,
            "recipients": row.recipients, "attempt": attempt,
        })  # fmt: skip
    return True


def sweep(now: dt.datetime) -> int:
    """Re-enqueue outbox rows still undelivered a minute after they were
    written (and a minute after they were last enqueued), unless a delivery
    holds them; how many."""
    cutoff = now - SWEEP_AFTER
    pending = list(
        Outbox.objects.filter(delivered_at__isnull=True, created_at__lte=cutoff)
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=cutoff))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .order_by("created_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for outbox_id in pending:
        enqueue(outbox_id)
    if pending:
        log.info("alert sweep: re-enqueued %s undelivered notification(s)", len(pending))
    return len(pending)
