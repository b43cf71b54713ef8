"""The approval task table: a projection of the ``approval.*`` events on run
streams (and of the run's own end, which cancels what is still open).

``project`` runs in the transaction that appends the events (a projector in
the ground layer's registry: the driver hands it its commits, the services
theirs); ``rebuild`` derives every row again from the log through the same
code, so the two cannot drift apart.
"""

import datetime as dt
from collections.abc import Sequence

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from approvals import live, notify
from approvals.models import ApprovalTask, BusinessCalendar, TaskStatus
from runs.ground.models import Event
from runs.models import Run

# Run events after which no decision can resume the run.
RUN_ENDS = ("run.cancelled", "run.failed", "run.succeeded", "run.compensating", "run.compensated")
# What the live projector is handed: approval facts, run ends, and a run's
# start (which tells it that the commit holds the run's whole log).
SUBSCRIBED = ("approval.", "run.started", *RUN_ENDS)


def _moment(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _user(username: str | None):
    if not username:
        return None
    return get_user_model().objects.filter(username=username).first()


def _group(name: str | None):
    return Group.objects.filter(name=name).first() if name else None


def _task(run_id: int, payload: dict) -> ApprovalTask:
    return ApprovalTask.objects.get(
        run_id=run_id, node_id=payload["node"], attempt=payload["attempt"]
    )


def project(events: Sequence[Event]) -> None:
    """The live projector of approval facts and run ends (registered in
    ApprovalsConfig): apply newly stored events to their runs' task rows;
    after commit, mail new requests and tell open inboxes."""
    by_run: dict[int, list[Event]] = {}
    for event in events:
        by_run.setdefault(int(event.stream.split(":", 1)[1]), []).append(event)
    for run_id, run_events in by_run.items():
        # A commit that holds its run's first event (a run that starts and
        # ends in one commit, as a webhook's pure flow does) can only end
        # tasks it requested itself: no statement looks for others.
        from_start = run_events[0].type == "run.started"
        _project(run_id, run_events, effects=True, may_have_tasks=not from_start)


def _project(
    run_id: int, events: Sequence[Event], *, effects: bool, may_have_tasks: bool = True
) -> None:
    changed = False
    run: Run | None = None
    for event in events:
        if event.type.startswith("approval."):
            run = run or Run.objects.get(pk=run_id)
            task = _apply(run, event)
            changed = may_have_tasks = True
            if effects and event.type == "approval.requested":
                notify.send_on_commit(task.pk, "request")
        elif event.type in RUN_ENDS and may_have_tasks:
            changed |= bool(
                ApprovalTask.objects.filter(run_id=run_id, status=TaskStatus.OPEN).update(
                    status=TaskStatus.CANCELLED, updated_at=event.occurred_at
                )
            )
    if changed and effects:
        # Tell open inboxes after commit: a page must never show a change
        # that then rolls back.
        transaction.on_commit(live.announce)


def _apply(run: Run, event: Event) -> ApprovalTask:
    kind, p, at = event.type, event.payload, event.occurred_at
    if kind == "approval.requested":
        return ApprovalTask.objects.create(
            run_id=run.pk,
            flow_id=run.flow_id,
            node_id=p["node"],
            attempt=p["attempt"],
            title=p["title"][:300],
            description=p["description"],
            form=p["form"],
            shows=p["shows"],
            assignee_user=_user(p["assignee_user"]),
            assignee_group=_group(p["assignee_group"]),
            requested_at=at,
            due_at=_moment(p["due_at"]),
            sla=p["sla"],
            escalation=p["escalation"],
            reminders=p["reminders"],
            remind_at=_moment(p["remind_at"]),
            separation_of_duties=p["separation_of_duties"],
            distinct_deciders=p.get("distinct_deciders", False),
            updated_at=at,
        )
    task = _task(run.pk, p)
    task.updated_at = at
    if kind == "approval.claimed":
        task.claimed_by, task.claimed_at = _user(p["user"]), at
    elif kind == "approval.released":
        task.claimed_by, task.claimed_at = None, None
    elif kind == "approval.reassigned":
        task.assignee_user, task.assignee_group = _user(p["user"]), _group(p["group"])
        task.claimed_by, task.claimed_at = None, None
    elif kind == "approval.commented":
        task.comments = [
            *task.comments,
            {"user": p["user"], "body": p["body"], "at": at.isoformat()},
        ]
    elif kind == "approval.reminded":
        task.reminders_sent += 1
        task.remind_at = _moment(p["next_remind_at"])
    elif kind == "approval.escalated":
        task.assignee_user, task.assignee_group = None, _group(p["group"])
        task.claimed_by, task.claimed_at = None, None
        task.escalation_level = p["level"]
        task.escalated_at = at
        task.breaches += 1
        task.due_at = _moment(p["due_at"])
        task.remind_at = _moment(p.get("remind_at"))
    elif kind == "approval.sla_breached":
        task.breaches += 1
        task.escalation_level = p["level"]
        task.due_at = None  # the policy keeps it waiting with no further SLA
    elif kind == "approval.decided":
        task.status = TaskStatus.DECIDED
        task.decision = p["decision"]
        task.comment = p["comment"]
        task.fields = p["fields"]
        task.decided_by = _user(p["user"])
        task.decided_by_name = p["user"]
        task.decided_at = at
        task.breaches += int(p.get("breach", False))
        task.remind_at = None
    elif kind == "approval.abandoned":
        task.status = TaskStatus.ABANDONED
        task.breaches += 1
        task.decided_by_name = "system:sla"
        task.decided_at = at
        task.remind_at = None
    else:
        raise ValueError(f"unknown approval event {kind}")
    task.save()
    return task


def rebuild() -> int:
    ApprovalTask.objects.all().delete()
    streams = (
        Event.objects.filter(stream__startswith="run:", type="approval.requested")
        .values_list("stream", flat=True)
        .distinct()
    )
    for stream in streams:
        run_id = int(stream.split(":", 1)[1])
        if not Run.objects.filter(pk=run_id).exists():
            continue
        events = Event.objects.filter(stream=stream).order_by("seq")
        _project(
            run_id,
            [e for e in events if e.type.startswith("approval.") or e.type in RUN_ENDS],
            effects=False,
        )
    return ApprovalTask.objects.count()


def _calendar_facts(event: Event) -> dict:
    payload = event.payload
    return {
        "time_zone": payload["time_zone"],
        "opening_hours": payload["opening_hours"],
        "holidays": payload["holidays"],
    }


def project_calendar(event: Event) -> BusinessCalendar:
    """A ``calendar.saved`` event holds the whole calendar: the row becomes it."""
    calendar, _ = BusinessCalendar.objects.update_or_create(
        group_id=event.payload["group_id"], defaults=_calendar_facts(event)
    )
    return calendar


def rebuild_calendars() -> int:
    """Each group's calendar as its last ``calendar.saved`` event says, upserted
    by group; a calendar no stream accounts for is deleted. Groups are
    configuration, not events: a group deleted since has no calendar."""
    groups = set(Group.objects.values_list("id", flat=True))
    latest: dict[int, Event] = {}
    for event in Event.objects.filter(
        stream__startswith="calendar:", type="calendar.saved"
    ).order_by("stream", "seq"):
        latest[event.payload["group_id"]] = event
    kept = [group_id for group_id in latest if group_id in groups]
    for group_id in kept:
        project_calendar(latest[group_id])
    BusinessCalendar.objects.exclude(group_id__in=kept).delete()
    return len(kept)
