"""The scheduled chain verification: per-stream checkpoints by seq, bounded
work per tick, and one alert per break."""

from django.conf import settings
from django.db import connection

from runs import chain_checks
from runs.chain_checks import ALERT_STREAM, ALERT_TYPE, verify_chains
from runs.ground.eventstore import append
from runs.models import ChainCheckpoint, Event
from runs.tasks import verify_chains as verify_chains_task


def _tamper(sql: str, params: list) -> None:
    """Edit rows behind the application's back, as a database owner could."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE runs_event DISABLE TRIGGER runs_event_no_update_or_delete")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE runs_event ENABLE TRIGGER runs_event_no_update_or_delete")


def _alerts() -> list[Event]:
    return list(Event.objects.filter(stream=ALERT_STREAM, type=ALERT_TYPE).order_by("seq"))


def test_each_stream_is_verified_up_to_its_own_seq(db):
    for n in range(3):
        append("flow:1", "flow.edited", {"n": n}, actor="user:olga")
    append("run:7", "run.started", {}, actor="user:olga")
    report = verify_chains()
    assert (report.streams, report.events, report.breaks) == (2, 4, 0)
    marks = dict(ChainCheckpoint.objects.values_list("stream", "seq"))
    assert marks == {"flow:1": 3, "run:7": 1}
    assert ChainCheckpoint.objects.get(stream="flow:1").hash == (
        Event.objects.get(stream="flow:1", seq=3).hash
    )


def test_a_tick_resumes_from_the_checkpoint_and_skips_streams_already_verified(db):
    for n in range(2):
        append("flow:1", "flow.edited", {"n": n}, actor="user:olga")
    verify_chains()
    append("flow:1", "flow.edited", {"n": 2}, actor="user:olga")
    report = verify_chains()
    assert (report.streams, report.events) == (1, 1)
    assert ChainCheckpoint.objects.get(stream="flow:1").seq == 3
    assert verify_chains().streams == 0


def test_a_tick_does_bounded_work(db):
    for n in range(7):
        append("flow:1", "flow.edited", {"n": n}, actor="user:olga")
    assert verify_chains(budget=3).events == 3
    assert ChainCheckpoint.objects.get(stream="flow:1").seq == 3
    assert verify_chains(budget=3).events == 3
    assert verify_chains(budget=3).events == 1
    assert ChainCheckpoint.objects.get(stream="flow:1").seq == 7


def test_a_tampered_event_is_detected_and_alerted_once(db):
    for n in range(4):
        append("flow:1", "flow.edited", {"n": n}, actor="user:olga")
    append("flow:2", "flow.created", {}, actor="user:olga")
    third = Event.objects.get(stream="flow:1", seq=3)
    _tamper("UPDATE runs_event SET payload = %s WHERE id = %s", ['{"n": 99}', third.pk])

    report = verify_chains()

    assert report.breaks == 1
    checkpoint = ChainCheckpoint.objects.get(stream="flow:1")
    assert (checkpoint.seq, checkpoint.broken_seq) == (2, 3)
    assert "payload column differs" in checkpoint.broken_reason
    assert ChainCheckpoint.objects.get(stream="flow:2").broken_seq is None
    [alert] = _alerts()
    assert alert.actor == "system:audit"
    assert alert.payload["stream"] == "flow:1" and alert.payload["seq"] == 3
    assert alert.payload["event_id"] == third.pk
    # Later ticks, and new events on the broken stream, alert no more.
    append("flow:1", "flow.edited", {"n": 5}, actor="user:olga")
    verify_chains_task()
    verify_chains()
    assert len(_alerts()) == 1


def test_removed_events_below_the_head_are_a_break(db):
    for n in range(3):
        append("flow:1", "flow.edited", {"n": n}, actor="user:olga")
    _tamper("DELETE FROM runs_event WHERE stream = %s AND seq = 3", ["flow:1"])
    assert verify_chains().breaks == 1
    [alert] = _alerts()
    assert "events removed" in alert.payload["reason"]


def test_a_second_break_elsewhere_is_alerted_too(db):
    for stream in ("flow:1", "flow:2"):
        append(stream, "flow.created", {}, actor="user:olga")
    verify_chains()
    for stream in ("flow:1", "flow:2"):
        append(stream, "flow.edited", {"n": 1}, actor="user:olga")
    _tamper("UPDATE runs_event SET actor = 'user:eve' WHERE stream = %s AND seq = 2", ["flow:2"])
    verify_chains()
    assert [a.payload["stream"] for a in _alerts()] == ["flow:2"]
    assert ChainCheckpoint.objects.get(stream="flow:1").seq == 2


def test_the_verification_is_on_the_beat_schedule():
    from config.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["audit-chain-verify"]
    app.loader.import_default_modules()
    assert entry["task"] == "runs.tasks.verify_chains" and entry["task"] in app.tasks
    assert 0 < entry["schedule"] and 0 < chain_checks.EVENTS_PER_TICK
