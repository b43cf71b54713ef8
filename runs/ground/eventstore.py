"""The one way to append to the event log, and the way to verify it.

Each event's canonical text (sorted keys, compact separators, UTC time with
microseconds, the previous event's hash) is stored verbatim in ``body`` and
hashed with SHA-256, so each stream is a hash chain. Appends to a stream lock
the stream's head row; a transaction appending to several streams locks them
in sorted order so two such transactions cannot deadlock.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from runs.ground import acting, clock, plainjson
from runs.ground.inserts import insert_values
from runs.ground.models import Event, Stream
from runs.ground.redaction import redact, secret_forms

GENESIS_HASH = "0" * 64


class EventPayloadError(ValueError):
    """The payload cannot be stored as canonical JSON."""


@dataclass(frozen=True)
class NewEvent:
    stream: str
    type: str
    payload: dict
    actor: str


def canonical_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_body(
    *, stream: str, seq: int, type: str, payload: dict, actor: str, at: str, prev: str
) -> str:
    document = {
        "actor": actor,
        "at": at,
        "payload": payload,
        "prev": prev,
        "seq": seq,
        "stream": stream,
        "type": type,
    }
    try:
        return json.dumps(
            document,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise EventPayloadError(f"event payload is not plain JSON: {exc}") from exc


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _lock_head(name: str) -> Stream:
    # The common case is an existing stream: one locking read. A new stream is
    # inserted with ON CONFLICT DO NOTHING so two first appends cannot both
    # create it; the loser then waits on the winner's lock like any append.
    try:
        return Stream.objects.select_for_update().get(name=name)
    except Stream.DoesNotExist:
        Stream.objects.bulk_create(
            [Stream(name=name, last_seq=0, last_hash=GENESIS_HASH)],
            ignore_conflicts=True,
        )
        return Stream.objects.select_for_update().get(name=name)


def lock_head(name: str) -> Stream:
    """Lock ``name``'s head (creating it) until the caller's transaction
    ends: for a writer that must read its rows and decide under the same
    lock its next append takes. Lock several heads in sorted order."""
    return _lock_head(name)


def append(stream: str, type: str, payload: dict, *, actor: str) -> Event:
    """Append one event to ``stream`` and return it."""
    return append_many([NewEvent(stream=stream, type=type, payload=payload, actor=actor)])[0]


class StaleStreamHead(Exception):
    """A caller's known head was not the stream's head: someone else appended."""


def append_many(
    new_events: Iterable[NewEvent],
    *,
    at: dt.datetime | None = None,
    known_heads: dict[str, tuple[int, str]] | None = None,
) -> list[Event]:
    """Append events atomically, in the given order, to one or more streams.

    This is the only code that writes events, and the one place that redacts
    registered secrets: before hashing, so the chain never commits to one.

    ``known_heads`` ({stream: (last seq, last hash)}) is for a caller that
    already serialises appends to a stream by a lock of its own (the driver
    holds the run row): the head is then checked by a compare-and-set on
    update instead of being read and locked first. A known head at seq 0 is
    a stream its caller has just brought into being (a run created in this
    transaction): its head row is inserted with the new head, and the
    primary key on the stream's name is the compare-and-set.
    """
    new_events = list(new_events)
    if not new_events:
        return []
    forms = secret_forms()
    prepared = []
    for new in new_events:
        # Before any query: a payload the log cannot store changes nothing.
        payload = _storable(redact(acting.tag(new.payload, new.actor), forms))
        prepared.append((new, payload, _storable(redact(new.actor, forms))))
    # A caller that stamps its own rows with a time passes it, so that the
    # rows and the events agree to the microsecond (rebuilds compare them).
    at = at or clock.now()
    at_text = canonical_time(at)
    known_heads = known_heads or {}
    written: list[Event] = []
    # No savepoint: an append fails with its caller's transaction, and a
    # savepoint costs two round trips on every step.
    with transaction.atomic(savepoint=False):
        heads = {}
        for name in sorted({e.stream for e in new_events}):
            if name in known_heads:
                seq, digest = known_heads[name]
                heads[name] = Stream(name=name, last_seq=seq, last_hash=digest)
            else:
                heads[name] = _lock_head(name)
        expected = {name: heads[name].last_seq for name in known_heads if name in heads}
        for new, payload, actor in prepared:
            head = heads[new.stream]
            seq = head.last_seq + 1
            body = canonical_body(
                stream=new.stream,
                seq=seq,
                type=new.type,
                payload=payload,
                actor=actor,
                at=at_text,
                prev=head.last_hash,
            )
            digest = body_hash(body)
            # Store what was hashed: the payload column is parsed from the body,
            # so the two can never disagree at write time.
            event = Event(
                stream=new.stream,
                seq=seq,
                type=new.type,
                payload=json.loads(body)["payload"],
                actor=actor,
                occurred_at=at,
                prev_hash=head.last_hash,
                hash=digest,
                body=body,
            )
            head.last_seq, head.last_hash = seq, digest
            written.append(event)
        # One INSERT for the batch; the unique (stream, seq) still guards it.
        insert_values(written)
        for head in heads.values():
            if expected.get(head.name) == 0:
                # A plain INSERT: a second writer's head row makes it fail
                # on the primary key, as a moved head fails the update below.
                Stream.objects.bulk_create([head])
                continue
            rows = Stream.objects.filter(name=head.name)
            if head.name in expected:
                rows = rows.filter(last_seq=expected[head.name])
            if rows.update(last_seq=head.last_seq, last_hash=head.last_hash) != 1:
                raise StaleStreamHead(
                    f"stream {head.name} moved on since seq {expected[head.name]}"
                )
    return written


def _storable(value: Any) -> Any:
    try:
        return plainjson.storable(value)
    except plainjson.NotStorable as exc:
        raise EventPayloadError(f"event payload is not plain JSON: {exc}") from exc


def read_stream(stream: str, *, after_seq: int = 0) -> Iterator[Event]:
    """Events of one stream in order. Followers track seq, never the table id:
    ids are allocated before commit, so they commit out of order."""
    return Event.objects.filter(stream=stream, seq__gt=after_seq).order_by("seq").iterator()


@dataclass(frozen=True)
class ChainBreak:
    stream: str
    seq: int
    event_id: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.stream}#{self.seq}"
        if self.event_id is not None:
            where += f" (event id {self.event_id})"
        return f"{where}: {self.reason}"


def verify_stream(stream: str) -> ChainBreak | None:
    """Return the first broken event of ``stream``, or None if the chain holds."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    for event in read_stream(stream):
        problem = _check_event(event, expected_seq, expected_prev)
        if problem:
            return ChainBreak(stream, event.seq, event.id, problem)
        expected_prev = event.hash
        expected_seq += 1
    head = Stream.objects.filter(name=stream).first()
    if head is None:
        return ChainBreak(stream, expected_seq - 1, None, "stream has no head row")
    if head.last_seq != expected_seq - 1 or head.last_hash != expected_prev:
        return ChainBreak(
            stream,
            head.last_seq,
            None,
            f"head says seq {head.last_seq} but the chain ends at seq {expected_seq - 1}"
            " (events removed, or head altered)",
        )
    return None


@dataclass(frozen=True)
class ChainProgress:
    """How far an incremental verification got: the last event that held
    (``seq`` 0 and the genesis hash before any) and the break, if one."""

    seq: int
    hash: str
    problem: ChainBreak | None


def verify_from(stream: str, *, after_seq: int, after_hash: str, limit: int) -> ChainProgress:
    """Verify at most ``limit`` events of ``stream`` after a checkpoint.

    The head is read before the events: it is written in the transaction
    that inserts them, so every seq it names is committed and readable, and
    an event missing below it was removed, not merely late.
    """
    head = Stream.objects.filter(name=stream).values_list("last_seq", flat=True).first()
    if head is None:
        return ChainProgress(
            after_seq, after_hash, ChainBreak(stream, after_seq, None, "stream has no head row")
        )
    if head < after_seq:
        reason = f"head says seq {head} but seq {after_seq} was verified (head altered)"
        return ChainProgress(after_seq, after_hash, ChainBreak(stream, head, None, reason))
    upto = min(head, after_seq + limit)
    seq, digest = after_seq, after_hash
    events = Event.objects.filter(stream=stream, seq__gt=after_seq, seq__lte=upto).order_by("seq")
    for event in events.iterator(chunk_size=500):
        problem = _check_event(event, seq + 1, digest)
        if problem:
            return ChainProgress(seq, digest, ChainBreak(stream, event.seq, event.id, problem))
        seq, digest = event.seq, event.hash
    if seq < upto:
        reason = f"sequence gap: expected seq {seq + 1}, the head says {head} (events removed)"
        return ChainProgress(seq, digest, ChainBreak(stream, seq + 1, None, reason))
    return ChainProgress(seq, digest, None)


def _check_event(event: Event, expected_seq: int, expected_prev: str) -> str | None:
    if event.seq != expected_seq:
        return f"sequence gap: expected seq {expected_seq}, found {event.seq}"
    if body_hash(event.body) != event.hash:
        return "hash does not match the stored body (body or hash altered)"
    if event.prev_hash != expected_prev:
        return "previous-hash link broken (an earlier event was replaced)"
    try:
        body = json.loads(event.body)
    except ValueError:
        return "stored body is not JSON"
    if not isinstance(body, dict):
        return "stored body is not a JSON object"
    columns = {
        "stream": event.stream,
        "seq": event.seq,
        "type": event.type,
        "actor": event.actor,
        "at": canonical_time(event.occurred_at),
        "prev": event.prev_hash,
    }
    for key, value in columns.items():
        if body.get(key) != value:
            return f"column {key!r} differs from the hashed body"
    # Text, not Python objects: 1, 1.0 and true are equal in Python but are
    # three different payloads. The columns agree with the body by now, so
    # the stored payload re-canonicalised must give the hashed text exactly.
    try:
        recanonical = canonical_body(
            stream=event.stream,
            seq=event.seq,
            type=event.type,
            payload=event.payload,
            actor=event.actor,
            at=canonical_time(event.occurred_at),
            prev=event.prev_hash,
        )
    except EventPayloadError:
        return "payload column is not plain JSON"
    if recanonical != event.body:
        return "payload column differs from the hashed body"
    return None


def verify_all() -> Iterator[tuple[str, ChainBreak | None]]:
    names = set(Stream.objects.values_list("name", flat=True))
    names |= set(Event.objects.values_list("stream", flat=True).distinct())
    for name in sorted(names):
        yield name, verify_stream(name)
