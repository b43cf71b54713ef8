"""Business calendars are written through a service that records each save
as a ``calendar.saved`` event on the group's calendar stream, with who saved
it; the rows are derived from those events again by a rebuild."""

import importlib
import io

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from approvals.calendars import CalendarRefused, calendar_save
from approvals.models import BusinessCalendar
from runs.ground.models import Event, Stream
from tests.conftest import login

WEEKDAYS = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


@pytest.fixture
def reviewers(db) -> Group:
    return Group.objects.get(name="Reviewer")


def calendar_events(group: Group) -> list[tuple[str, str, dict]]:
    events = Event.objects.filter(stream=f"calendar:{group.pk}").order_by("seq")
    return [(event.type, event.actor, event.payload) for event in events]


def test_saving_hours_on_the_page_records_who_saved_them(client, adam, reviewers):
    response = login(client, adam).post(
        "/approvals/calendars/",
        {"group": reviewers.pk, "time_zone": "Europe/Berlin",
         "opening_hours": "mon 09:00-12:00", "holidays": "2026-12-25\n2026-12-24"},
    )  # fmt: skip
    assert response.status_code == 302
    assert calendar_events(reviewers) == [
        (
            "calendar.saved",
            "user:adam",
            {
                "group_id": reviewers.pk,
                "group": "Reviewer",
                "time_zone": "Europe/Berlin",
                "opening_hours": {"mon": [["09:00", "12:00"]]},
                "holidays": ["2026-12-24", "2026-12-25"],
            },
        )
    ]


def test_each_change_of_hours_or_holidays_is_an_event_and_the_row_follows(adam, reviewers):
    calendar_save(group=reviewers, actor=adam, time_zone="UTC", opening_hours=WEEKDAYS,
                  holidays=[])  # fmt: skip
    calendar_save(group=reviewers, actor=adam, time_zone="UTC", opening_hours=WEEKDAYS,
                  holidays=["2026-12-25"])  # fmt: skip
    row = BusinessCalendar.objects.get(group=reviewers)
    assert row.holidays == ["2026-12-25"]
    assert [payload["holidays"] for _, _, payload in calendar_events(reviewers)] == [
        [],
        ["2026-12-25"],
    ]
    assert BusinessCalendar.objects.count() == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"holidays": ["2026-02-30"]}, "holidays"),
        ({"opening_hours": {"mon": [["17:00", "09:00"]]}}, "closes before it opens"),
        ({"opening_hours": {"someday": [["09:00", "17:00"]]}}, "unknown weekday"),
        ({"opening_hours": {"mon": [["nine", "five"]]}}, "nine"),
        ({"opening_hours": {}}, "needs some opening hours"),
    ],
)
def test_a_bad_calendar_is_refused_and_records_nothing(adam, reviewers, changes, message):
    spec = {"time_zone": "UTC", "opening_hours": WEEKDAYS, "holidays": [], **changes}
    with pytest.raises(CalendarRefused, match=message):
        calendar_save(group=reviewers, actor=adam, **spec)
    assert not Stream.objects.filter(name=f"calendar:{reviewers.pk}").exists()
    assert not BusinessCalendar.objects.exists()


def test_calendars_rebuild_from_their_events(adam, reviewers):
    calendar_save(group=reviewers, actor=adam, time_zone="Europe/Berlin",
                  opening_hours=WEEKDAYS, holidays=["2026-12-25"])  # fmt: skip
    supervisors = Group.objects.create(name="Supervisors")
    calendar_save(group=supervisors, actor=adam, time_zone="UTC", opening_hours=WEEKDAYS,
                  holidays=[])  # fmt: skip
    BusinessCalendar.objects.filter(group=reviewers).update(time_zone="UTC", holidays=[])
    BusinessCalendar.objects.filter(group=supervisors).delete()

    call_command("rebuild_projections", stdout=io.StringIO())

    rows = BusinessCalendar.objects.order_by("group__name").values_list(
        "group__name", "time_zone", "holidays"
    )
    assert list(rows) == [
        ("Reviewer", "Europe/Berlin", ["2026-12-25"]),
        ("Supervisors", "UTC", []),
    ]


def test_a_calendar_written_before_calendar_events_survives_a_rebuild_once_migrated(reviewers):
    BusinessCalendar.objects.create(
        group=reviewers, time_zone="Europe/Berlin", opening_hours=WEEKDAYS, holidays=[]
    )
    migration = importlib.import_module("approvals.migrations.0003_record_calendars")
    migration.record(None, None)
    migration.record(None, None)  # a second run records nothing more
    assert [(type_, actor) for type_, actor, _ in calendar_events(reviewers)] == [
        ("calendar.saved", "system:migration")
    ]
    stray = BusinessCalendar.objects.create(
        group=Group.objects.create(name="Unrecorded"), opening_hours=WEEKDAYS
    )
    call_command("rebuild_projections", stdout=io.StringIO())
    assert BusinessCalendar.objects.get(group=reviewers).time_zone == "Europe/Berlin"
    # The flows' rule: a row no stream accounts for is not a projection.
    assert not BusinessCalendar.objects.filter(pk=stray.pk).exists()
