"""Reads of the dead-letter inbox: dead letters with their error signature,
grouped for triage; the preview of a bulk replay; the rows of an export.

A dead letter is a step in ``dead_lettered`` of a run that is not a test
run (a test run's dead letter is the editor's business, not the on-call's).
Its breaker target is worked out from its recorded input, the rendered
config, the same way the driver asks the connector before a call."""

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pydantic
from django.db.models import Q, QuerySet
from django.utils import timezone

from connectors import base as connectors
from connectors.outbound.models import Breaker
from flows.models import Flow
from runs import decider, driver, migration
from runs.graph_facts import connector_of
from runs.models import DeadLetterAssignment, Step
from runs.signatures import Signature, signature_of

# The inbox reads at most this many dead letters, oldest first; an export
# streams all of them.
INBOX_LIMIT = 2000
UNDO_SUFFIX = "~undo"
# A group's key, "<flow id>-<signature key>", or a signature key alone.
GROUP_KEY = re.compile(r"(?:\d{1,18}-)?[0-9a-f]{16}")


@dataclass
class DeadLetterFilters:
    flow: str = ""  # part of the flow's name or slug
    group: str = ""  # a signature key
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params) -> "DeadLetterFilters":
        filters = cls(flow=params.get("flow", "").strip()[:150],
                      group=params.get("group", "").strip()[:32])  # fmt: skip
        if "\x00" in filters.flow:
            filters.errors["flow"] = "The text may not contain a NUL character."
            filters.flow = ""
        if filters.group and not GROUP_KEY.fullmatch(filters.group):
            filters.errors["group"] = "That group does not exist (any more)."
            filters.group = ""
        return filters


@dataclass
class Letter:
    step: Step
    target: str
    side_effect: str
    signature: Signature
    dead_since: dt.datetime
    assignee: str = ""

    @property
    def critical(self) -> bool:
        """A compensation that could not complete: an effect left undone."""
        return self.step.node_id.endswith(UNDO_SUFFIX)

    @property
    def value(self) -> str:
        return f"{self.step.run_id}:{self.step.node_id}"

    @property
    def age(self) -> dt.timedelta:
        return timezone.now() - self.dead_since


@dataclass
class Group:
    flow: Flow
    signature: Signature
    letters: list[Letter]

    @property
    def key(self) -> str:
        return f"{self.flow.pk}-{self.signature.key}"

    @property
    def critical(self) -> bool:
        return any(letter.critical for letter in self.letters)

    @property
    def behind(self) -> bool:
        """Some of its runs follow an older version than the flow's newest:
        a replay there (the fix just shipped) may be offered."""
        newest = self.flow.published_version
        return bool(newest) and any(
            lt.step.run.version_number != newest and not lt.step.run.is_test for lt in self.letters
        )

    @property
    def oldest(self) -> dt.datetime:
        return min(letter.dead_since for letter in self.letters)

    @property
    def oldest_age(self) -> dt.timedelta:
        return timezone.now() - self.oldest


def dead_letter_steps(filters: DeadLetterFilters | None = None) -> QuerySet[Step]:
    steps = Step.objects.filter(status=decider.DEAD_LETTERED, run__is_test=False)
    if filters and filters.flow:
        named = Flow.objects.filter(
            Q(name__icontains=filters.flow) | Q(slug__icontains=filters.flow)
        ).values_list("pk", flat=True)
        steps = steps.filter(run__flow_id__in=list(named))
    return steps.select_related("run__flow").order_by("run__updated_at", "run_id", "position")


def dead_letter_count() -> int:
    return Step.objects.filter(status=decider.DEAD_LETTERED, run__is_test=False).count()


def _dead_since(step: Step) -> dt.datetime:
    """When the last attempt failed (its recorded time), else when the run
    last changed: a wait given up has no attempt error."""
    if step.errors and isinstance(step.errors[-1], dict) and step.errors[-1].get("at"):
        try:
            return dt.datetime.fromisoformat(str(step.errors[-1]["at"]).replace("Z", "+00:00"))
        except ValueError:
            pass
    return step.run.updated_at


def call_facts(step: Step) -> tuple[str, str]:
    """The step's breaker target and side-effect class, from its recorded
    input; ("", "none") when the input no longer validates or the connector
    is gone (the step's page still shows the input and the error)."""
    try:
        connector = connector_of(driver.graph_for(step.run), step.node_id)
        inner = getattr(connector, "inner", connector)
        config = type(inner).Config.model_validate(step.input or {})
        return connector.breaker_target(config) or "", str(connector.side_effect(config))
    except (connectors.UnknownConnector, pydantic.ValidationError, KeyError, TypeError):
        return "", "none"


def letter_of(step: Step, assignee: str = "") -> Letter:
    target, side_effect = call_facts(step)
    return Letter(
        step=step,
        target=target,
        side_effect=side_effect,
        signature=signature_of(error=step.error, connector=step.connector, target=target),
        dead_since=_dead_since(step),
        assignee=assignee,
    )


def _assignees(steps: list[Step]) -> dict[tuple[int, str], str]:
    rows = DeadLetterAssignment.objects.filter(run_id__in={s.run_id for s in steps})
    return {(row.run_id, row.node_id): row.assignee for row in rows}


def letters_of(steps: Iterable[Step]) -> list[Letter]:
    steps = list(steps)
    assigned = _assignees(steps)
    return [letter_of(s, assigned.get((s.run_id, s.node_id), "")) for s in steps]


def inbox_groups(filters: DeadLetterFilters) -> tuple[list[Group], bool]:
    """The dead letters grouped by flow and signature: critical groups
    first, then the oldest first. Also whether the inbox limit cut it short."""
    steps = list(dead_letter_steps(filters)[: INBOX_LIMIT + 1])
    groups = group_letters(letters_of(steps[:INBOX_LIMIT]))
    if filters.group:
        groups = [g for g in groups if g.key == filters.group or g.signature.key == filters.group]
    return groups, len(steps) > INBOX_LIMIT


def group_letters(letters: Iterable[Letter]) -> list[Group]:
    groups: dict[tuple[int, Signature], Group] = {}
    for letter in letters:
        flow = letter.step.run.flow
        group = groups.setdefault((flow.pk, letter.signature), Group(flow, letter.signature, []))
        group.letters.append(letter)
    return sorted(groups.values(), key=lambda g: (not g.critical, g.oldest, g.flow.name))


def breaker_of(target: str) -> Breaker | None:
    return Breaker.objects.filter(target=target).first() if target else None


@dataclass
class Call:
    """A side-effecting step a replay calls out again, as the replay will
    make the call (on the run's own version, or the newest)."""

    letter: Letter
    connector: str
    target: str
    side_effect: str
    idempotency_key: str
    plan: migration.Plan | None = None  # the run's move, on the newest version


@dataclass
class ReplayPreview:
    letters: list[Letter]
    versions: list[tuple[str, int, int]]  # flow name, version, how many runs
    calls: list[Call]  # the side-effecting steps that will call out again
    newest: bool = False  # each run moves to its flow's newest version first
    # On the newest version: each letter's move, and the runs that cannot move.
    plans: dict[str, migration.Plan] = field(default_factory=dict)
    refused: list[migration.Plan] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return len({letter.step.run_id for letter in self.letters})

    @property
    def moving(self) -> list[Letter]:
        """The letters that will be replayed (all of them on their own version)."""
        if not self.newest:
            return self.letters
        return [lt for lt in self.letters if self.plans[lt.value].allowed]

    @property
    def moving_runs(self) -> int:
        return len({letter.step.run_id for letter in self.moving})


def replay_preview(pairs: Iterable[tuple[int, str]], newest: bool = False) -> ReplayPreview:
    """What replaying these dead letters will do: each resumes its run on
    the run's own version (or, with ``newest``, moves the run to its flow's
    newest version first, where it can move), and calls its connector again
    with the step's idempotency key (the same key: a remote that honours it
    does not repeat an effect it already made)."""
    wanted = set(pairs)
    steps = dead_letter_steps().filter(run_id__in={run for run, _ in wanted})
    letters = letters_of(s for s in steps if (s.run_id, s.node_id) in wanted)
    preview = ReplayPreview(letters=letters, versions=[], calls=[], newest=newest)
    counted: dict[tuple[str, int], set[int]] = {}
    none = str(connectors.SideEffect.NONE)
    for letter in letters:
        step, run = letter.step, letter.step.run
        if newest:
            plan = preview.plans[letter.value] = migration.plan(run, step.node_id)
            if not plan.allowed:
                preview.refused.append(plan)
                continue
            counted.setdefault((run.flow.name, plan.to_version), set()).add(run.pk)
            if plan.calls_out:
                preview.calls.append(Call(letter, plan.connector, plan.target, plan.side_effect,
                                          plan.idempotency_key, plan))  # fmt: skip
            continue
        counted.setdefault((run.flow.name, run.version_number), set()).add(run.pk)
        if letter.side_effect != none:
            preview.calls.append(Call(letter, step.connector, letter.target, letter.side_effect,
                                      step.idempotency_key))  # fmt: skip
    preview.versions = [(name, n, len(runs)) for (name, n), runs in sorted(counted.items())]
    return preview


EXPORT_FIELDS = [
    "run_id", "flow", "version", "node", "connector", "target", "signature", "signature_text",
    "critical", "attempts", "outcome_unknown", "dead_since", "age_seconds", "assignee",
    "idempotency_key", "error",
]  # fmt: skip


def export_rows(filters: DeadLetterFilters, chunk: int = 500) -> Iterator[dict]:
    """Every dead letter the filters select, one plain dict each, read in
    chunks so a long queue never sits in memory at once."""
    batch: list[Step] = []
    for step in dead_letter_steps(filters).iterator(chunk_size=chunk):
        batch.append(step)
        if len(batch) == chunk:
            yield from _export_batch(batch, filters)
            batch = []
    yield from _export_batch(batch, filters)


def _export_batch(steps: list[Step], filters: DeadLetterFilters) -> Iterator[dict]:
    for letter in letters_of(steps):
        group = f"{letter.step.run.flow_id}-{letter.signature.key}"
        if filters.group and filters.group not in (group, letter.signature.key):
            continue
        step, run = letter.step, letter.step.run
        yield {
            "run_id": run.pk, "flow": run.flow.name, "version": run.version_number,
            "node": step.node_id, "connector": step.connector, "target": letter.target,
            "signature": letter.signature.key, "signature_text": letter.signature.text,
            "critical": letter.critical, "attempts": step.attempt,
            "outcome_unknown": step.outcome_unknown,
            "dead_since": letter.dead_since.isoformat(),
            "age_seconds": int(letter.age.total_seconds()), "assignee": letter.assignee,
            "idempotency_key": step.idempotency_key, "error": step.error,
        }  # fmt: skip
