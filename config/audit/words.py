"""The event log in people's words: "ana published version 3 of “Orders”",
"the engine retried step charge of run 12", "webhook started run 40".

One sentence per event, built from its actor, its stream and its payload
(as stored, so redacted). An event type without words of its own still
reads as a sentence naming who, what and where.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runs.ground.models import Event


@dataclass(frozen=True)
class Names:
    """What a stream's id means to people: flow names by flow id."""

    flows: Mapping[int, str] = field(default_factory=dict)


def actor_words(actor: str) -> str:
    """Who acted. The engine is "the engine" (what it decided as a run
    went on); the platform's other parts are "system (<part>)"; a person
    is their user name; a trigger is named by its kind."""
    kind, _, rest = actor.partition(":")
    if not rest:
        return actor or "someone"
    if kind == "user":
        return rest
    if kind == "system":
        return "the engine" if rest == "engine" else f"system ({rest})"
    if kind == "webhook":
        return f"{rest} webhook"
    if kind == "topic":
        return f"event on topic {rest}"
    if kind == "queue":
        return f"queue {rest}"
    if kind == "run":
        return f"run {rest}"
    return actor


def _stream_id(stream: str) -> int | None:
    _, _, rest = stream.partition(":")
    return int(rest) if rest.isdigit() else None


def subject(stream: str, names: Names) -> str:
    """The stream as a thing: "run 12", "flow “Orders”", "team 3"."""
    kind, _, rest = stream.partition(":")
    number = _stream_id(stream)
    if kind in ("flow", "triggers") and number is not None:
        name = names.flows.get(number)
        return f"flow “{name}”" if name else f"flow {number}"
    if kind == "audit" and rest == "alerts":
        return "the audit alerts"
    return f"{kind} {rest}" if rest else stream


def _step(event: Event, names: Names) -> str:
    return f"step {event.payload.get('node', '?')} of {subject(event.stream, names)}"


def _with(text: str, detail: Any) -> str:
    return f"{text}: {detail}" if detail else text


Words = Callable[[Event, str, Names], str]


def _run_started(event: Event, who: str, names: Names) -> str:
    payload = event.payload
    text = f"{who} started {subject(event.stream, names)}"
    if payload.get("replay_of"):
        text = f"{who} replayed run {payload['replay_of']} as {subject(event.stream, names)}"
    flow = names.flows.get(payload.get("flow_id"))  # type: ignore[arg-type]
    if flow:
        text += f" of “{flow}”"
    if payload.get("version"):
        text += f" on version {payload['version']}"
    return text


def _step_replayed(event: Event, who: str, names: Names) -> str:
    text = f"{who} replayed {_step(event, names)}"
    return text + (" with an edited input" if "edited_input" in event.payload else "")


def _flow_published(event: Event, who: str, names: Names) -> str:
    text = (
        f"{who} published version {event.payload.get('number')} of {subject(event.stream, names)}"
    )
    return _with(text, event.payload.get("note"))


def _chain_broken(event: Event, who: str, names: Names) -> str:
    payload = event.payload
    return (
        f"{who} found the hash chain of {payload.get('stream')} broken at seq "
        f"{payload.get('seq')}: {payload.get('reason')}"
    )


def _step_phrase(verb: str) -> Words:
    return lambda event, who, names: f"{who} {verb} {_step(event, names)}"


def _step_phrase_with(verb: str, key: str) -> Words:
    return lambda event, who, names: _with(
        f"{who} {verb} {_step(event, names)}", event.payload.get(key)
    )


def _run_phrase(verb: str, key: str = "") -> Words:
    return lambda event, who, names: _with(
        f"{who} {verb} {subject(event.stream, names)}", event.payload.get(key) if key else ""
    )


def _flow_phrase(verb: str, key: str = "") -> Words:
    return lambda event, who, names: _with(
        f"{who} {verb} {subject(event.stream, names)}", event.payload.get(key) if key else ""
    )


def _approval(verb: str) -> Words:
    return lambda event, who, names: (
        f"{who} {verb} the approval at {_step(event, names)}"
        + (f" ({event.payload['decision']})" if event.payload.get("decision") else "")
    )


def _delivery(outcome: str) -> Words:
    return lambda event, who, names: _with(
        f"{who} delivery {outcome} for {subject(event.stream, names)}",
        (event.payload.get("detail") or {}).get("reason"),
    )


WORDS: dict[str, Words] = {
    "run.started": _run_started,
    "run.queued": _run_phrase("queued", "reason"),
    "run.released": _run_phrase("released"),
    "run.succeeded": _run_phrase("completed"),
    "run.failed": _run_phrase("failed", "error"),
    "run.cancelled": _run_phrase("cancelled", "reason"),
    "run.compensating": _run_phrase("began undoing", "reason"),
    "run.compensated": _run_phrase("undid", "reason"),
    "run.migrated": _run_phrase("moved to the newest version"),
    "step.scheduled": _step_phrase("scheduled"),
    "step.started": _step_phrase("started"),
    "step.succeeded": _step_phrase("completed"),
    "step.skipped": _step_phrase("skipped"),
    "step.waiting": _step_phrase("paused"),
    "step.held": _step_phrase_with("held", "reason"),
    "step.attempt_failed": _step_phrase_with("saw an attempt fail at", "error"),
    "step.retry_scheduled": _step_phrase("retried"),
    "step.failed": _step_phrase_with("failed", "error"),
    "step.dead_lettered": _step_phrase_with("dead-lettered", "error"),
    "step.replayed": _step_replayed,
    "step.discarded": _step_phrase_with("discarded", "reason"),
    "step.cancelled": _step_phrase_with("cancelled", "reason"),
    "step.lease_expired": _step_phrase("took back the expired lease of"),
    "step.lease_extended": _step_phrase("extended the lease of"),
    "step.iteration_succeeded": _step_phrase("completed an iteration of"),
    "step.compensation_scheduled": _step_phrase("scheduled the undo"),
    "approval.requested": _approval("requested"),
    "approval.claimed": _approval("claimed"),
    "approval.released": _approval("released"),
    "approval.reassigned": _approval("reassigned"),
    "approval.commented": _approval("commented on"),
    "approval.reminded": _approval("sent a reminder for"),
    "approval.escalated": _approval("escalated"),
    "approval.sla_breached": _approval("recorded a missed deadline for"),
    "approval.decided": _approval("decided"),
    "approval.abandoned": _approval("abandoned"),
    "flow.created": _flow_phrase("created"),
    "flow.edited": lambda event, who, names: (
        f"{who} edited {', '.join(event.payload.get('changes', {}))} of "
        f"{subject(event.stream, names)}"
    ),
    "flow.owner_changed": _flow_phrase("changed the owner of"),
    "flow.activated": _flow_phrase("activated", "reason"),
    "flow.paused": _flow_phrase("paused", "reason"),
    "flow.retired": _flow_phrase("retired", "reason"),
    "flow.reviewed": _flow_phrase("recorded a review of", "note"),
    "flow.draft_saved": _flow_phrase("saved a draft of"),
    "flow.published": _flow_published,
    "flow.webhook_token_issued": _flow_phrase("issued the webhook URL of"),
    "flow.webhook_token_rotated": _flow_phrase("rotated the webhook URL of"),
    "flow.secrets_moved": _flow_phrase("moved secrets into credentials for"),
    "test.snapshot_pinned": _flow_phrase("pinned a draft snapshot of"),
    "delivery.accepted": _delivery("accepted"),
    "delivery.refused": _delivery("refused"),
    "delivery.duplicate": _delivery("ignored a duplicate"),
    "credential.created": lambda event, who, names: (
        f"{who} created credential {event.payload.get('name', subject(event.stream, names))}"
    ),
    "credential.deleted": lambda event, who, names: (
        f"{who} deleted credential {event.payload.get('name', subject(event.stream, names))}"
    ),
    "team.created": lambda event, who, names: f"{who} created team {event.payload.get('name')}",
    "login.locked_out": lambda event, who, names: (
        f"{who} locked out {event.payload.get('address', 'an address')}"
    ),
    "login.unlocked": lambda event, who, names: (
        f"{who} unlocked {event.payload.get('address', 'an address')}"
    ),
    "audit.chain_broken": _chain_broken,
}


def describe(event: Event, names: Names | None = None) -> str:
    """The event as one sentence, starting with who did it."""
    names = names or Names()
    who = actor_words(event.actor)
    words = WORDS.get(event.type)
    if words is not None:
        try:
            return words(event, who, names)
        except (AttributeError, KeyError, TypeError):
            pass  # a payload of an older shape reads as the general sentence
    what = event.type.replace(".", " ").replace("_", " ")
    return f"{who} recorded {what} on {subject(event.stream, names)}"
