import base64
import io
import json
import threading
from urllib.parse import quote

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction

from runs.ground import eventstore
from runs.ground.eventstore import NewEvent, append, append_many, verify_all, verify_stream
from runs.ground.models import Event, ImmutableEventError, Stream
from runs.ground.redaction import REDACTED, register_secret_provider, unregister_secret_provider


def test_events_on_a_stream_are_numbered_and_chained(db):
    first = append("flow:1", "flow.created", {"b": 1, "a": [1, 2]}, actor="user:olga")
    second = append("flow:1", "flow.edited", {"x": "y"}, actor="user:olga")
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == eventstore.GENESIS_HASH
    assert second.prev_hash == first.hash
    assert Stream.objects.get(name="flow:1").last_hash == second.hash
    assert verify_stream("flow:1") is None


def test_body_is_canonical_text_with_microsecond_utc_time(db):
    event = append("flow:9", "flow.created", {"z": 1, "a": 2.5}, actor="user:olga")
    assert event.body.startswith('{"actor":"user:olga","at":"')
    assert '"payload":{"a":2.5,"z":1}' in event.body
    at = json.loads(event.body)["at"]
    assert at.endswith("Z") and len(at.split(".")[1]) == 7  # six digits and Z


def test_payload_that_is_not_plain_json_is_refused_with_a_clear_error(db):
    with pytest.raises(eventstore.EventPayloadError, match="not plain JSON"):
        append("flow:1", "flow.created", {"when": object()}, actor="user:olga")
    with pytest.raises(eventstore.EventPayloadError):
        append("flow:1", "flow.created", {"n": float("nan")}, actor="user:olga")
    assert not Event.objects.exists()


def test_the_model_refuses_updates_and_deletes(db):
    event = append("flow:1", "flow.created", {}, actor="user:olga")
    event.type = "flow.deleted"
    with pytest.raises(ImmutableEventError):
        event.save()
    with pytest.raises(ImmutableEventError):
        event.delete()
    with pytest.raises(ImmutableEventError):
        Event.objects.filter(pk=event.pk).update(type="x")
    with pytest.raises(ImmutableEventError):
        Event.objects.all().delete()


def test_the_database_refuses_updates_and_deletes_from_raw_sql(db):
    event = append("flow:1", "flow.created", {}, actor="user:olga")
    for statement in (
        "UPDATE runs_event SET type = 'x' WHERE id = %s",
        "DELETE FROM runs_event WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement, [event.pk])
    assert Event.objects.get(pk=event.pk).type == "flow.created"


def _tamper(sql: str, params: list) -> None:
    """Edit rows behind the application's back, as a database owner could."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE runs_event DISABLE TRIGGER runs_event_no_update_or_delete")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE runs_event ENABLE TRIGGER runs_event_no_update_or_delete")


def test_verify_audit_chain_names_the_first_tampered_event(db):
    for n in range(4):
        append("flow:1", "flow.edited", {"n": n}, actor="user:olga")
    append("flow:2", "flow.created", {}, actor="user:olga")
    call_command("verify_audit_chain", stdout=io.StringIO())

    third = Event.objects.get(stream="flow:1", seq=3)
    _tamper("UPDATE runs_event SET payload = %s WHERE id = %s", ['{"n": 99}', third.pk])
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 of 2 streams are broken"):
        call_command("verify_audit_chain", stdout=io.StringIO(), stderr=err)
    assert f"flow:1#3 (event id {third.pk})" in err.getvalue()
    assert "payload column differs" in err.getvalue()


def test_rewriting_body_and_hash_breaks_the_next_link(db):
    for n in range(3):
        append("flow:1", "flow.edited", {"n": n}, actor="user:olga")
    second = Event.objects.get(stream="flow:1", seq=2)
    forged = second.body.replace('"n":1', '"n":7')
    _tamper(
        "UPDATE runs_event SET body = %s, hash = %s, payload = %s WHERE id = %s",
        [forged, eventstore.body_hash(forged), '{"n": 7}', second.pk],
    )
    problem = verify_stream("flow:1")
    assert (problem.seq, problem.event_id) == (3, Event.objects.get(stream="flow:1", seq=3).pk)
    assert "previous-hash link broken" in problem.reason


def test_a_deleted_event_is_caught(db):
    for n in range(3):
        append("flow:1", "flow.edited", {"n": n}, actor="user:olga")
    _tamper("DELETE FROM runs_event WHERE stream = %s AND seq = 3", ["flow:1"])
    problem = dict(verify_all())["flow:1"]
    assert "head says seq 3 but the chain ends at seq 2" in problem.reason


def test_one_transaction_may_append_to_several_streams(db):
    written = append_many(
        [
            NewEvent("run:2", "run.started", {}, "system:engine"),
            NewEvent("flow:1", "flow.edited", {}, "system:engine"),
            NewEvent("run:2", "run.finished", {}, "system:engine"),
        ]
    )
    assert [(e.stream, e.seq) for e in written] == [("run:2", 1), ("flow:1", 1), ("run:2", 2)]
    assert all(problem is None for _, problem in verify_all())


def test_registered_secrets_are_redacted_in_every_encoding_before_hashing(db):
    secret = "sk_live_51Habc/def+ghi"
    provider = lambda: [secret]  # noqa: E731
    register_secret_provider(provider)
    try:
        payload = {
            "error": f"401 for token {secret}",
            "url": f"https://api.example.com/?key={quote(secret, safe='')}",
            "header": "Basic " + base64.b64encode(secret.encode()).decode(),
            secret: "as a key",
        }
        event = append("run:1", "step.failed", payload, actor="system:engine")
    finally:
        unregister_secret_provider(provider)
    stored = Event.objects.get(pk=event.pk)
    assert secret not in stored.body
    assert quote(secret, safe="") not in stored.body
    assert base64.b64encode(secret.encode()).decode() not in stored.body
    assert stored.body.count(REDACTED) == 4
    assert verify_stream("run:1") is None


def test_the_platform_keys_are_never_written(db, settings):
    event = append("run:1", "step.failed", {"oops": settings.SECRET_KEY}, actor="x")
    assert settings.SECRET_KEY not in event.body


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_to_one_stream_stay_gap_free():
    """Eight threads, each with its own PostgreSQL connection, append to one
    stream (which does not exist yet) at once."""
    threads_count, per_thread = 8, 25
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_count)

    def worker(index: int) -> None:
        try:
            barrier.wait()
            for n in range(per_thread):
                append("flow:77", "flow.edited", {"t": index, "n": n}, actor="user:olga")
        except BaseException as exc:  # reported below, never swallowed
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seqs = list(
        Event.objects.filter(stream="flow:77").order_by("seq").values_list("seq", flat=True)
    )
    assert seqs == list(range(1, threads_count * per_thread + 1))
    assert verify_stream("flow:77") is None


@pytest.mark.django_db(transaction=True)
def test_crossing_multi_stream_appends_do_not_deadlock():
    """Two threads append to the same pair of streams in opposite orders; locks
    are taken in sorted order, so neither waits on the other forever."""
    errors: list[BaseException] = []

    def worker(streams: list[str]) -> None:
        try:
            for _ in range(30):
                append_many([NewEvent(s, "x.y", {}, "system:test") for s in streams])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    a = threading.Thread(target=worker, args=(["run:1", "run:2"],))
    b = threading.Thread(target=worker, args=(["run:2", "run:1"],))
    a.start(), b.start()
    a.join(), b.join()
    assert errors == []
    assert Stream.objects.get(name="run:1").last_seq == 60
    assert all(problem is None for _, problem in verify_all())


@pytest.mark.parametrize("forged", ["true", "1.0", '"1"'])
def test_verification_compares_canonical_text_so_a_changed_type_is_caught(db, forged):
    # 1, 1.0 and true compare equal as Python objects; as text they differ.
    append("run:1", "step.scheduled", {"attempt": 1, "node": "a"}, actor="engine")
    event = Event.objects.get(stream="run:1", seq=1)
    _tamper(
        "UPDATE runs_event SET payload = %s::jsonb WHERE id = %s",
        [f'{{"attempt": {forged}, "node": "a"}}', event.pk],
    )
    problem = verify_stream("run:1")
    assert problem is not None and problem.seq == 1
    assert "payload column differs from the hashed body" in problem.reason


def test_floats_jsonb_rewrites_are_stored_canonically_and_still_verify(db):
    # jsonb has no negative zero and writes 1e16 without an exponent: the
    # store canonicalises both so the byte-for-byte check holds.
    payload = {"zero": -0.0, "big": 1e17, "small": 1e-7, "third": 1 / 3, "one": 1.0}
    event = append("run:2", "step.succeeded", payload, actor="engine")
    assert '"big":100000000000000000' in event.body and '"zero":0.0' in event.body
    assert verify_stream("run:2") is None


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"text": "\ud800"}, "lone surrogate"),
        ({"text": "a\x00b"}, "NUL character"),
        ({"\x00": 1}, "NUL character"),
        ({"n": 10**1900}, "too large"),
        ({"n": 1e300}, "too large"),
        ({"deep": json.loads("[" * 300 + "]" * 300)}, "nested too deeply"),
    ],
)
def test_values_the_log_cannot_store_are_refused_before_any_write(db, payload, message):
    with pytest.raises(eventstore.EventPayloadError, match=message):
        append("run:3", "step.succeeded", payload, actor="engine")
    assert not Event.objects.filter(stream="run:3").exists()
    assert not Stream.objects.filter(name="run:3").exists()
