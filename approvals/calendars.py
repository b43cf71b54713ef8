"""Writes to business calendars. Each save is a ``calendar.saved`` event on
the group's calendar stream (``calendar:<group id>``) holding the whole
calendar, projected onto the BusinessCalendar row in the same transaction:
the log says who changed a group's hours or holidays, and when."""

import datetime as dt

from django.contrib.auth.models import Group
from django.db import transaction

from approvals import projection, services, sla
from approvals.models import BusinessCalendar
from runs.ground.eventstore import append


class CalendarRefused(services.ApprovalRefused):
    """The calendar cannot be saved; the message says why, for a person."""


def _holidays(days: list) -> list[str]:
    try:
        return sorted({dt.date.fromisoformat(str(day)).isoformat() for day in days})
    except ValueError as exc:
        raise CalendarRefused(f"holidays: {exc}") from None


def _checked(time_zone: str, opening_hours: dict, holidays: list[str]) -> None:
    # The same check the SLA applies when it reads the calendar: a saved
    # calendar is always one the SLA can count in.
    try:
        sla.Calendar.from_spec(time_zone=time_zone, opening_hours=opening_hours, holidays=holidays)
    except (sla.CalendarError, ValueError, TypeError, AttributeError) as exc:
        raise CalendarRefused(str(exc)) from None


@transaction.atomic
def calendar_save(
    *, group: Group, time_zone: str, opening_hours: dict, holidays: list, actor
) -> BusinessCalendar:
    """Set a group's working time. A change applies to tasks requested or
    escalated afterwards; recorded due times stay as they were."""
    days = _holidays(holidays)
    _checked(time_zone, opening_hours, days)
    payload = {
        "group_id": group.pk,
        "group": group.name,
        "time_zone": time_zone,
        "opening_hours": opening_hours,
        "holidays": days,
    }
    # A text actor (``system:migration``) is recorded as given.
    text = actor if isinstance(actor, str) else services.actor(actor)
    event = append(f"calendar:{group.pk}", "calendar.saved", payload, actor=text)
    return projection.project_calendar(event)
