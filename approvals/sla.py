"""Due times, in wall-clock hours or in a group's business hours.

Computed in Python from the time the caller passes (the one clock's ``now``),
never by the database, so tests move time for web, worker and sweep at once.
"""

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from approvals.models import BusinessCalendar

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A calendar with no opening hours would never reach a due time; give up
# looking after this many days and say so.
SEARCH_DAYS = 800


class CalendarError(ValueError):
    pass


@dataclass(frozen=True)
class Calendar:
    zone: ZoneInfo
    windows: dict[int, list[tuple[dt.time, dt.time]]]  # weekday -> opening windows
    holidays: frozenset[dt.date]

    @classmethod
    def from_spec(cls, *, time_zone: str, opening_hours: dict, holidays: list) -> "Calendar":
        try:
            zone = ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CalendarError(f"unknown time zone {time_zone!r}") from None
        windows: dict[int, list[tuple[dt.time, dt.time]]] = {}
        for day, spans in opening_hours.items():
            if day not in WEEKDAYS:
                raise CalendarError(f"unknown weekday {day!r} (use {', '.join(WEEKDAYS)})")
            parsed = []
            for start, end in spans:
                opens, closes = dt.time.fromisoformat(start), dt.time.fromisoformat(end)
                if closes <= opens:
                    raise CalendarError(f"{day}: {start}–{end} closes before it opens")
                parsed.append((opens, closes))
            windows[WEEKDAYS.index(day)] = sorted(parsed)
        if not any(windows.values()):
            raise CalendarError("a business calendar needs some opening hours")
        days = frozenset(dt.date.fromisoformat(text) for text in holidays)
        return cls(zone=zone, windows=windows, holidays=days)


def add_wall_hours(start: dt.datetime, hours: float) -> dt.datetime:
    return start + dt.timedelta(hours=hours)


def add_business_hours(start: dt.datetime, hours: float, calendar: Calendar) -> dt.datetime:
    """The moment ``hours`` of open time after ``start``. Window bounds are
    made in the calendar's zone and compared in UTC, so a DST change inside
    a window counts the hours that really pass."""
    remaining = dt.timedelta(hours=hours)
    cursor = start.astimezone(dt.UTC)
    day = start.astimezone(calendar.zone).date()
    for _ in range(SEARCH_DAYS):
        if day not in calendar.holidays:
            for opens, closes in calendar.windows.get(day.weekday(), []):
                window_start = _utc(day, opens, calendar.zone)
                window_end = _utc(day, closes, calendar.zone)
                if cursor >= window_end:
                    continue
                begin = max(cursor, window_start)
                if remaining <= window_end - begin:
                    return begin + remaining
                remaining -= window_end - begin
                cursor = window_end
        day += dt.timedelta(days=1)
    raise CalendarError(f"no {hours} business hours within {SEARCH_DAYS} days")


def _utc(day: dt.date, time: dt.time, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, time, tzinfo=zone).astimezone(dt.UTC)


def group_calendar(group_name: str) -> Calendar:
    row = BusinessCalendar.objects.filter(group__name=group_name).first()
    if row is None:
        raise CalendarError(f"group “{group_name}” has no business calendar")
    return Calendar.from_spec(
        time_zone=row.time_zone, opening_hours=row.opening_hours, holidays=row.holidays
    )


def due_after(start: dt.datetime, *, hours: float, clock: str, group: str | None) -> dt.datetime:
    """``clock`` is "wall" or "business" (counted in ``group``'s calendar)."""
    if clock == "business":
        if not group:
            raise CalendarError("business hours are counted in a group's calendar: assign a group")
        return add_business_hours(start, hours, group_calendar(group))
    return add_wall_hours(start, hours)
