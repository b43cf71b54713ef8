"""Due times in wall-clock and business hours, computed from a given time."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from approvals import sla
from approvals.requesting import first_reminder

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = {day: [["09:00", "12:00"], ["13:00", "17:00"]] for day in sla.WEEKDAYS[:5]}


def berlin(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN)


def calendar(**overrides) -> sla.Calendar:
    spec = {"time_zone": "Europe/Berlin", "opening_hours": WEEKDAYS, "holidays": []}
    spec.update(overrides)
    return sla.Calendar.from_spec(**spec)


def test_business_hours_skip_lunch_nights_and_weekends():
    friday_afternoon = berlin(2026, 11, 27, 15, 0)
    due = sla.add_business_hours(friday_afternoon, 4, calendar())
    # 2 hours on Friday, then Monday 09:00-11:00.
    assert due == berlin(2026, 11, 30, 11, 0)
    assert sla.add_business_hours(berlin(2026, 11, 30, 11, 0), 2, calendar()) == berlin(
        2026, 11, 30, 14, 0
    )


def test_a_request_outside_opening_hours_starts_counting_at_opening():
    saturday = berlin(2026, 11, 28, 20, 0)
    assert sla.add_business_hours(saturday, 1, calendar()) == berlin(2026, 11, 30, 10, 0)


def test_holidays_are_closed():
    cal = calendar(holidays=["2026-12-24", "2026-12-25"])
    assert sla.add_business_hours(berlin(2026, 12, 23, 16, 0), 2, cal) == berlin(
        2026, 12, 28, 10, 0
    )


def test_hours_across_a_dst_change_are_real_hours():
    # Berlin leaves summer time on 2026-10-25 at 03:00 (back to 02:00).
    cal = calendar(opening_hours={day: [["00:00", "23:59"]] for day in sla.WEEKDAYS})
    start = berlin(2026, 10, 25, 1, 0)
    due = sla.add_business_hours(start, 3, cal)
    assert due - start.astimezone(dt.UTC) == dt.timedelta(hours=3)


def test_wall_hours_ignore_calendars():
    start = dt.datetime(2026, 11, 28, 20, 0, tzinfo=dt.UTC)
    assert sla.due_after(start, hours=5, clock="wall", group=None) == start + dt.timedelta(hours=5)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"opening_hours": {"moon": [["09:00", "17:00"]]}}, "unknown weekday"),
        ({"opening_hours": {"mon": [["17:00", "09:00"]]}}, "closes before it opens"),
        ({"opening_hours": {}}, "needs some opening hours"),
    ],
)
def test_bad_calendars_say_what_is_wrong(spec, message):
    with pytest.raises(sla.CalendarError, match=message):
        calendar(**spec)


def test_business_hours_need_a_group_with_a_calendar(db):
    start = dt.datetime(2026, 11, 28, 20, 0, tzinfo=dt.UTC)
    with pytest.raises(sla.CalendarError, match="assign a group"):
        sla.due_after(start, hours=1, clock="business", group=None)
    with pytest.raises(sla.CalendarError, match="has no business calendar"):
        sla.due_after(start, hours=1, clock="business", group="Reviewer")


def test_the_next_reminder_is_the_earliest_still_ahead():
    due = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
    now = due - dt.timedelta(hours=3)
    assert first_reminder(due, [4, 2, 1], now) == due - dt.timedelta(hours=2)
    assert first_reminder(due, [1], due) is None
    assert first_reminder(None, [1], now) is None
