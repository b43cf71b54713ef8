"""Reads of the event log for auditors: filters, keyset pages, the chains'
verification state and the alerts.

Pages are ordered newest first by (occurred_at, id) and continue from a
cursor holding the last row's pair, never by OFFSET, so a page deep in
millions of events costs what the first one does.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db.models import CharField, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from config.audit import diffs, words
from flows.models import Flow
from runs.chain_checks import ALERT_STREAM, ALERT_TYPE
from runs.ground import keyset
from runs.models import ChainCheckpoint, Event, Run

PAGE_SIZE = 50
MAX_TEXT = 200


@dataclass
class AuditFilters:
    actor: str = ""  # "ana", "user:ana", "system" (every system actor), "webhook"
    flow: str = ""  # part of a flow's name or slug
    run: int | None = None
    type: str = ""  # an event type or its prefix: "step." or "flow.published"
    stream: str = ""  # exactly, as the lockouts page links to it
    since: datetime | None = None
    until: datetime | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params) -> "AuditFilters":
        """A value that cannot be used is left out and explained, never a 500."""
        names = ("actor", "flow", "type", "stream")
        filters = cls(**{name: params.get(name, "").strip()[:MAX_TEXT] for name in names})
        for name in names:
            if "\x00" in getattr(filters, name):
                filters.errors[name] = "The text may not contain a NUL character."
                setattr(filters, name, "")
        raw_run = params.get("run", "").strip().removeprefix("run:")
        if raw_run:
            if raw_run.isdigit() and len(raw_run) < 19:
                filters.run = int(raw_run)
            else:
                filters.errors["run"] = f"“{raw_run[:40]}” is not a run number."
        for name, is_end in (("since", False), ("until", True)):
            raw = params.get(name, "").strip()
            if raw:
                try:
                    setattr(filters, name, _moment(raw, is_end))
                except ValueError:
                    filters.errors[name] = f"“{raw[:40]}” is not a date or time (YYYY-MM-DD HH:MM)."
        return filters

    def query(self) -> dict[str, str]:
        """The filters as query parameters, for links and exports."""
        values = {
            "actor": self.actor, "flow": self.flow, "type": self.type, "stream": self.stream,
            "run": str(self.run) if self.run is not None else "",
            # Exactly as parsed, so the next page filters as this one did.
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }  # fmt: skip
        return {key: value for key, value in values.items() if value}


def _moment(raw: str, is_end: bool) -> datetime:
    """A date means its whole day: as an end, up to the next midnight."""
    zone = timezone.get_current_timezone()
    if len(raw) == 10:
        day = date.fromisoformat(raw)
        return datetime.combine(day + timedelta(days=1) if is_end else day, time(), zone)
    moment = datetime.fromisoformat(raw)
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _actor_filter(actor: str) -> Q:
    if ":" in actor:
        return Q(actor=actor)
    return Q(actor=actor) | Q(actor=f"user:{actor}") | Q(actor__startswith=f"{actor}:")


def _flow_streams(text: str) -> Q:
    """The flows' own streams, their triggers' and their runs': the runs are
    named by a subquery, so a flow with a million runs sends no list."""
    flow_ids = list(
        Flow.objects.filter(Q(name__icontains=text) | Q(slug__icontains=text)).values_list(
            "pk", flat=True
        )
    )
    own = [f"{kind}:{pk}" for pk in flow_ids for kind in ("flow", "triggers")]
    runs = (
        Run.objects.filter(flow_id__in=flow_ids)
        .annotate(stream=Concat(Value("run:"), Cast("pk", CharField()), output_field=CharField()))
        .order_by()
        .values("stream")
    )
    return Q(stream__in=own) | Q(stream__in=runs)


def filtered_events(filters: AuditFilters) -> QuerySet[Event]:
    events = Event.objects.all()
    if filters.actor:
        events = events.filter(_actor_filter(filters.actor))
    if filters.flow:
        events = events.filter(_flow_streams(filters.flow))
    if filters.run is not None:
        events = events.filter(stream=f"run:{filters.run}")
    if filters.stream:
        events = events.filter(stream=filters.stream)
    if filters.type:
        events = events.filter(type__startswith=filters.type)
    if filters.since:
        events = events.filter(occurred_at__gte=filters.since)
    if filters.until:
        events = events.filter(occurred_at__lt=filters.until)
    return events.order_by("-occurred_at", "-id")


BadCursor = keyset.BadCursor


def encode_cursor(event: Event) -> str:
    return keyset.encode(event.occurred_at, event.pk)


decode_cursor = keyset.decode


@dataclass
class ChainState:
    stream: str
    seq: int  # verified up to this seq; 0 before the first check
    verified_at: datetime | None
    broken_seq: int | None
    broken_reason: str


@dataclass
class AuditRow:
    event: Event
    sentence: str
    changes: list[diffs.Change]
    chain: ChainState

    @property
    def verified(self) -> bool:
        broken = self.chain.broken_seq
        return self.event.seq <= self.chain.seq and (broken is None or self.event.seq < broken)

    @property
    def broken(self) -> bool:
        return self.chain.broken_seq is not None and self.event.seq >= self.chain.broken_seq


@dataclass
class AuditPage:
    rows: list[AuditRow]
    next_cursor: str
    chains: list[ChainState]


def flow_names() -> words.Names:
    """Every flow's name: flows are few (hundreds), events many."""
    return words.Names(flows=dict(Flow.objects.values_list("pk", "name")))


def chain_states(streams: set[str]) -> dict[str, ChainState]:
    found = {
        mark.stream: ChainState(
            mark.stream, mark.seq, mark.verified_at, mark.broken_seq, mark.broken_reason
        )  # fmt: skip
        for mark in ChainCheckpoint.objects.filter(stream__in=streams)
    }
    return {name: found.get(name, ChainState(name, 0, None, None, "")) for name in streams}


def audit_page(filters: AuditFilters, *, after: str = "", size: int = PAGE_SIZE) -> AuditPage:
    events = filtered_events(filters)
    if after:
        when, pk = decode_cursor(after)
        events = events.filter(keyset.before("occurred_at", when, pk))
    found = list(events[: size + 1])
    more = len(found) > size
    found = found[:size]
    names = flow_names()
    chains = chain_states({event.stream for event in found})
    rows = [
        AuditRow(event, words.describe(event, names), diffs.changes_of(event), chains[event.stream])
        for event in found
    ]
    return AuditPage(
        rows=rows,
        next_cursor=encode_cursor(found[-1]) if more else "",
        chains=sorted(chains.values(), key=lambda state: state.stream),
    )


def chain_alerts(limit: int = 20) -> list[Event]:
    """The newest chain-break alerts: each is a tampered or damaged log."""
    alerts = Event.objects.filter(stream=ALERT_STREAM, type=ALERT_TYPE).order_by("-seq")
    return list(alerts[:limit])
