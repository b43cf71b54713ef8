"""Circuit breakers: one per external target, shared by every worker.

closed → open after N failures within a window (per node type, settings) →
half-open after a cool-down, when exactly one probe call is let through →
closed on its success, open again on its failure. While a breaker is open,
the driver holds steps that would call its target (they wait, attempt
unspent) until a release time; those times are spread at most
``LEDGERFLOW_BREAKER_RELEASE_PER_SECOND`` apart, so a breaker that closes
lets its backlog through gradually.

Every state change is one event on ``breaker:<target>``, appended by the one
caller the store told it made the change; ``Breaker`` rows are their
projection. If Redis cannot be reached, calls go ahead as if every breaker
were closed, and the fault is logged and counted (``StoreFault``).
"""

import contextlib
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F

from connectors.outbound import _store
from connectors.outbound._store import ALLOW, PROBE, WAIT, Reply, StoreDown  # noqa: F401
from connectors.outbound.models import Breaker, StoreFault
from runs.ground import clock, projectors
from runs.ground.eventstore import NewEvent, append_many
from runs.ground.models import Event, Stream

log = logging.getLogger(__name__)

EVENT_TYPES = {
    "open": "breaker.opened",
    "half_open": "breaker.half_opened",
    "closed": "breaker.closed",
}
RESET_EVENT = "breaker.reset"


@dataclass(frozen=True)
class Policy:
    failures: int
    window_seconds: float
    cooldown_seconds: float


def policy_for(node_type: str) -> Policy:
    defaults = settings.LEDGERFLOW_BREAKER_DEFAULTS
    values = {**defaults, **settings.LEDGERFLOW_BREAKERS_BY_TYPE.get(node_type, {})}
    return Policy(
        failures=int(values["failures"]),
        window_seconds=float(values["window_seconds"]),
        cooldown_seconds=float(values["cooldown_seconds"]),
    )


_redis_stores: dict[str, _store.RedisStore] = {}


def store() -> "_store.RedisStore | _store.DatabaseStore":
    url = getattr(settings, "LEDGERFLOW_BREAKER_REDIS_URL", "")
    if not url:
        return _store.DatabaseStore()
    if url not in _redis_stores:
        _redis_stores[url] = _store.RedisStore(url)
    return _redis_stores[url]


def _epoch(moment: dt.datetime) -> float:
    return moment.timestamp()


def _moment(seconds: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds is not None else None


# --- what the driver asks -------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    verdict: str  # allow, probe or wait
    due: dt.datetime | None = None
    event: NewEvent | None = None  # a state change this caller must record


def admit(target: str, *, now: dt.datetime, probe_seconds: float) -> Admission:
    """May a call to ``target`` go now? Called inside the claiming
    transaction, which appends ``event`` (if any) with the run's events."""
    gap = 1.0 / settings.LEDGERFLOW_BREAKER_RELEASE_PER_SECOND
    recheck = settings.LEDGERFLOW_BREAKER_RECHECK_SECONDS
    try:
        reply = store().admit(target, _epoch(now), probe_seconds, gap, recheck)
    except StoreDown as exc:
        note_fault(exc, now)
        return Admission(verdict=ALLOW)
    return Admission(verdict=reply.verdict, due=_moment(reply.due),
                     event=change_event(target, reply))  # fmt: skip


def record_call(
    target: str, *, ok: bool, node_type: str, now: dt.datetime, run_id: int | None = None
) -> str | None:
    """Count a finished call; returns the new state if this call changed it.
    On the database store the change and its event commit together. The run
    whose call it was is named on the event it causes (an alert tells that
    run's flow)."""
    policy = policy_for(node_type)
    shared = store()
    # On the database the row's change and its event commit together; on
    # Redis the script has already decided, so no transaction is held open.
    with transaction.atomic() if shared.transactional else contextlib.nullcontext():
        try:
            reply = shared.record(target, _epoch(now), ok, policy.failures,
                                  policy.window_seconds, policy.cooldown_seconds)  # fmt: skip
        except StoreDown as exc:
            note_fault(exc, now)
            return None
        event = change_event(target, reply, run_id=run_id)
        if event is not None:
            publish([event], now=now)
    return reply.change


def reset(target: str, *, actor: str, now: dt.datetime | None = None) -> bool:
    """An admin closes a breaker by hand. False if it was already closed."""
    now = now or clock.now()
    with transaction.atomic():
        reply = store().reset(target, _epoch(now))
        event = change_event(target, reply, actor=actor, reset=True)
        if event is None:
            return False
        publish([event], now=now)
    return True


def note_fault(exc: Exception, now: dt.datetime) -> None:
    """The shared store is unreachable: log it and count it where the
    Breakers page shows it, after the caller's transaction (a fault must not
    make a run's commit wait on a shared row)."""
    log.warning("circuit breaker store unreachable, calls proceed as if closed: %s", exc)
    message = str(exc)[:500]

    def count() -> None:
        written = StoreFault.objects.filter(store="redis").update(
            count=F("count") + 1, last_at=now, last_error=message
        )
        if not written:
            StoreFault.objects.get_or_create(
                store="redis",
                defaults={"count": 1, "first_at": now, "last_at": now, "last_error": message},
            )

    transaction.on_commit(count)


# --- events and the projection -----------------------------------------------------


def change_event(
    target: str,
    reply: Reply,
    *,
    actor: str = "system:breaker",
    reset: bool = False,
    run_id: int | None = None,
) -> NewEvent | None:
    if not reply.change:
        return None
    payload = {
        "target": target,
        "state": reply.change,
        "version": reply.version,
        "failures": reply.failures,
        "opened_at": _iso(reply.opened_at),
        "probe_at": _iso(reply.probe_at),
    }
    if run_id is not None:
        payload["run_id"] = run_id
    kind = RESET_EVENT if reset else EVENT_TYPES[reply.change]
    return NewEvent(stream=f"breaker:{target}", type=kind, payload=payload, actor=actor)


def _iso(seconds: float | None) -> str | None:
    moment = _moment(seconds)
    return moment.isoformat() if moment else None


def publish(events: Iterable[NewEvent], *, now: dt.datetime | None = None) -> None:
    """Append breaker events and project them, in the caller's transaction;
    then hand them to the registry (an opening opens an alert incident)."""
    with transaction.atomic(savepoint=False):
        stored = append_many(list(events), at=now)
        for event in stored:
            project(event)
        projectors.project(stored)


def project(event: Event) -> None:
    payload = event.payload
    row = Breaker.objects.select_for_update().filter(target=payload["target"]).first()
    if row is not None and row.version >= payload["version"]:
        return  # an older change appended late: the newer one already shows
    parse = dt.datetime.fromisoformat
    # The failures that opened it stay shown while it probes and after.
    failures = payload["failures"] if payload["state"] == "open" else (row.failures if row else 0)
    Breaker.objects.update_or_create(
        target=payload["target"],
        defaults={
            "state": payload["state"],
            "failures": failures,
            "opened_at": parse(payload["opened_at"]) if payload["opened_at"] else None,
            "probe_at": parse(payload["probe_at"]) if payload["probe_at"] else None,
            "changed_at": event.occurred_at,
            "version": payload["version"],
        },
    )


def rebuild() -> int:
    """Derive the Breaker rows again from the breaker streams alone."""
    Breaker.objects.all().delete()
    names = Stream.objects.filter(name__startswith="breaker:").values_list("name", flat=True)
    for name in names:
        for event in Event.objects.filter(stream=name).order_by("seq"):
            project(event)
    return Breaker.objects.count()
