"""What an approval step asks for: the ``approval.requested`` payload."""

import datetime as dt

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from approvals import sla

# The reason an approval step waits: the decision signals the step with it.
WAIT_REASON = "approval"


class RequestError(ValueError):
    pass


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat() if moment else None


def first_reminder(due_at: dt.datetime | None, offsets: list[float], after: dt.datetime):
    """The earliest reminder (``offsets`` hours before ``due_at``) still ahead."""
    if due_at is None:
        return None
    moments = sorted(due_at - dt.timedelta(hours=h) for h in offsets)
    return next((m for m in moments if m > after), None)


def build(config, *, now: dt.datetime) -> dict:
    if config.assignee_user:
        if (
            not get_user_model()
            .objects.filter(username=config.assignee_user, is_active=True)
            .exists()
        ):
            raise RequestError(f"assignee user “{config.assignee_user}” does not exist")
    elif not Group.objects.filter(name=config.assignee_group).exists():
        raise RequestError(f"assignee group “{config.assignee_group}” does not exist")
    if config.escalation and not Group.objects.filter(name=config.escalation.group).exists():
        raise RequestError(f"escalation group “{config.escalation.group}” does not exist")
    due_at = None
    if config.sla_hours is not None:
        try:
            due_at = sla.due_after(
                now, hours=config.sla_hours, clock=config.sla_clock, group=config.assignee_group
            )
        except sla.CalendarError as exc:
            raise RequestError(f"SLA: {exc}") from None
    reminders = sorted(config.remind_before_hours, reverse=True)
    return {
        "title": config.title,
        "description": config.description,
        "assignee_user": config.assignee_user,
        "assignee_group": config.assignee_group,
        "form": [f.model_dump() for f in config.fields],
        "shows": config.shows,
        "sla": {"hours": config.sla_hours, "clock": config.sla_clock},
        "escalation": config.escalation.model_dump() if config.escalation else {},
        "reminders": reminders,
        "remind_at": _iso(first_reminder(due_at, reminders, now)),
        "separation_of_duties": config.separation_of_duties,
        "distinct_deciders": config.distinct_deciders,
        "due_at": _iso(due_at),
    }
