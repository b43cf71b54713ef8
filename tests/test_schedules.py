"""Schedule triggers: cron in a time zone, fired by the trigger sweep once
per fire time, through daylight-saving changes, restarts and racing beats."""

import datetime as dt
import threading

from connectors.triggers import schedules
from connectors.triggers.configs import ScheduleConfig
from connectors.triggers.models import DeliveryRecord, Receipt
from runs.ground import clock
from runs.models import Run
from tests.trigger_helpers import pause, triggered_flow

UTC = dt.UTC
BERLIN = "Europe/Berlin"


def at(*parts) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def schedule(cron: str, timezone: str = BERLIN, catch_up: str = "run_late") -> dict:
    return {
        "type": "trigger.schedule",
        "config": {"cron": cron, "timezone": timezone, "catch_up": catch_up},
    }


def scheduled_flow(olga, published_at: dt.datetime, cron: str, **options):
    with clock.frozen_at(published_at):
        return triggered_flow(olga, schedule(cron, **options), slug="nightly")


def sweep(moment: dt.datetime) -> dict:
    with clock.frozen_at(moment):
        return schedules.sweep(moment)


def fire_times(flow) -> list[str]:
    return sorted(r.input["fire_time"] for r in Run.objects.filter(flow=flow))


def test_a_missing_local_time_fires_once_at_the_next_valid_instant(olga):
    # Berlin, 29 March 2026: 02:00 CET jumps to 03:00 CEST; 02:30 never exists.
    flow = scheduled_flow(olga, at(2026, 3, 28, 12, 0), "30 2 * * *")
    assert sweep(at(2026, 3, 29, 0, 59)) == {
        "started": 0,
        "skipped": 0,
        "refused": 0,
        "duplicate": 0,
    }
    sweep(at(2026, 3, 29, 1, 0, 30))  # 03:00:30 CEST
    sweep(at(2026, 3, 29, 1, 30))
    assert fire_times(flow) == ["2026-03-29T01:00:00Z"]
    run = Run.objects.get(flow=flow)
    assert run.input["local_time"] == "2026-03-29T03:00:00+02:00" and run.input["late"] is False
    sweep(at(2026, 3, 30, 0, 30, 5))  # 02:30 CEST the next day
    assert fire_times(flow) == ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]


def test_every_time_in_the_gap_lands_on_one_instant_and_fires_once(olga):
    flow = scheduled_flow(olga, at(2026, 3, 29, 0, 0), "*/20 2 * * *")
    sweep(at(2026, 3, 29, 1, 0, 10))
    assert fire_times(flow) == ["2026-03-29T01:00:00Z"]


def test_an_ambiguous_local_time_fires_once_on_its_first_occurrence(olga):
    # Berlin, 25 October 2026: 03:00 CEST falls back to 02:00 CET; 02:30 is twice.
    flow = scheduled_flow(olga, at(2026, 10, 24, 12, 0), "30 2 * * *")
    sweep(at(2026, 10, 25, 0, 30, 5))  # 02:30 CEST, the first 02:30
    sweep(at(2026, 10, 25, 1, 30, 5))  # 02:30 CET, the second
    sweep(at(2026, 10, 25, 3, 0))
    assert fire_times(flow) == ["2026-10-25T00:30:00Z"]
    assert Run.objects.get(flow=flow).input["local_time"] == "2026-10-25T02:30:00+02:00"


def test_fires_through_the_fall_back_day_follow_the_wall_clock():
    config = ScheduleConfig(cron="0 * * * *", timezone=BERLIN)
    fires = schedules.fires_between(config, at(2026, 10, 24, 22, 30), at(2026, 10, 25, 3, 30))
    # 01:00 and 02:00 CEST, then 03:00 CET: the repeated 02:00 CET does not fire.
    assert [f.strftime("%H:%M") for f in fires] == ["23:00", "00:00", "02:00", "03:00"]


def test_a_second_sweep_or_a_restart_fires_nothing_twice(olga):
    flow = scheduled_flow(olga, at(2026, 6, 1, 8, 0), "0 * * * *", timezone="UTC")
    moment = at(2026, 6, 1, 10, 0, 30)
    first = sweep(moment)
    second = sweep(moment)
    assert first["started"] == 2 and second["started"] == 0
    assert fire_times(flow) == ["2026-06-01T09:00:00Z", "2026-06-01T10:00:00Z"]


def test_two_sweeps_racing_fire_each_time_once(olga, transactional_db):
    flow = scheduled_flow(olga, at(2026, 6, 1, 0, 0), "*/10 * * * *", timezone="UTC")
    moment = at(2026, 6, 1, 1, 0, 5)
    barrier = threading.Barrier(2)
    results = []

    def racer():
        from django.db import connection

        try:
            barrier.wait()
            results.append(schedules.sweep(moment))
        finally:
            connection.close()

    with clock.frozen_at(moment):
        threads = [threading.Thread(target=racer) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(results) == 2
    assert Run.objects.filter(flow=flow).count() == 6
    assert sum(r["started"] for r in results) == 6
    assert len(set(fire_times(flow))) == 6


def test_missed_fires_run_late_by_default(olga):
    flow = scheduled_flow(olga, at(2026, 6, 1, 8, 0), "0 * * * *", timezone="UTC")
    sweep(at(2026, 6, 1, 11, 0, 20))
    late = {r.input["fire_time"]: r.input["late"] for r in Run.objects.filter(flow=flow)}
    assert late == {
        "2026-06-01T09:00:00Z": True,
        "2026-06-01T10:00:00Z": True,
        "2026-06-01T11:00:00Z": False,
    }


def test_missed_fires_are_recorded_as_skipped_when_the_policy_says_so(olga):
    flow = scheduled_flow(olga, at(2026, 6, 1, 8, 0), "0 * * * *", timezone="UTC", catch_up="skip")
    counts = sweep(at(2026, 6, 1, 11, 0, 20))
    assert counts["skipped"] == 2 and counts["started"] == 1
    assert fire_times(flow) == ["2026-06-01T11:00:00Z"]
    skipped = DeliveryRecord.objects.filter(flow=flow, outcome="skipped")
    assert sorted(r.key for r in skipped) == ["2026-06-01T09:00:00Z", "2026-06-01T10:00:00Z"]
    sweep(at(2026, 6, 1, 11, 30))
    assert DeliveryRecord.objects.filter(flow=flow).count() == 2


def test_a_paused_flow_records_its_fires_as_refused_and_does_not_catch_up(olga):
    flow = scheduled_flow(olga, at(2026, 6, 1, 8, 0), "0 * * * *", timezone="UTC")
    pause(flow, olga)
    sweep(at(2026, 6, 1, 9, 0, 10))
    assert not Run.objects.filter(flow=flow).exists()
    assert Receipt.objects.get(flow=flow).outcome == "refused"
    record = DeliveryRecord.objects.get(flow=flow)
    assert record.outcome == "refused" and "paused" in record.detail["reason"]


def test_beat_ticks_the_trigger_sweep_task(olga, settings):
    from config.celery import app
    from connectors.triggers import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["trigger-sweep"]
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
    flow = scheduled_flow(olga, at(2026, 6, 1, 8, 0), "0 9 * * *", timezone="UTC")
    with clock.frozen_at(at(2026, 6, 1, 9, 0, 3)):
        tasks.sweep()
    assert fire_times(flow) == ["2026-06-01T09:00:00Z"]


def sweep_every(step_minutes: int, start: dt.datetime, end: dt.datetime) -> None:
    moment = start
    while moment <= end:
        sweep(moment)
        moment += dt.timedelta(minutes=step_minutes)


def test_a_quarter_hourly_schedule_through_spring_forward_day(olga):
    # Local midnight is 23:00 UTC the day before; 02:00-02:45 do not exist
    # and all land on 03:00 CEST, which fires once: 96 - 4 = 92 fires.
    flow = scheduled_flow(olga, at(2026, 3, 28, 22, 55), "*/15 * * * *")
    sweep_every(5, at(2026, 3, 28, 23, 0), at(2026, 3, 29, 21, 50))
    runs = list(Run.objects.filter(flow=flow))
    assert len(runs) == 92
    locals_ = sorted(r.input["local_time"][11:16] for r in runs)
    assert "02:15" not in locals_ and locals_.count("03:00") == 1
    assert not any(r.input["late"] for r in runs)


def test_a_quarter_hourly_schedule_through_fall_back_day(olga):
    # 25 real hours, but the repeated 02:00-02:45 fire on their first
    # occurrence only: 96 fires, one per wall-clock slot.
    flow = scheduled_flow(olga, at(2026, 10, 24, 21, 55), "*/15 * * * *")
    sweep_every(5, at(2026, 10, 24, 22, 0), at(2026, 10, 25, 22, 50))
    runs = list(Run.objects.filter(flow=flow))
    assert len(runs) == 96
    assert len({r.input["local_time"][11:16] for r in runs}) == 96
    offsets = {r.input["local_time"][11:16]: r.input["local_time"][-6:] for r in runs}
    assert offsets["02:30"] == "+02:00" and offsets["03:00"] == "+01:00"


def test_rebuild_restores_the_fire_ledger_so_nothing_fires_again(olga):
    import io

    from django.core.management import call_command

    flow = scheduled_flow(olga, at(2026, 6, 1, 8, 0), "0 * * * *", timezone="UTC", catch_up="skip")
    sweep(at(2026, 6, 1, 10, 0, 20))  # 09:00 skipped, 10:00 started
    pause(flow, olga)
    sweep(at(2026, 6, 1, 11, 0, 20))  # 11:00 refused

    def ledger():
        return sorted(
            Receipt.objects.filter(flow=flow).values_list("key", "outcome", "run_id", "at")
        )

    before = ledger()
    assert [(key[11:16], outcome) for key, outcome, _, _ in before] == [
        ("09:00", "skipped"),
        ("10:00", "started"),
        ("11:00", "refused"),
    ]
    Receipt.objects.all().delete()
    DeliveryRecord.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert ledger() == before
    sweep(at(2026, 6, 1, 11, 0, 30))
    assert Run.objects.filter(flow=flow).count() == 1
