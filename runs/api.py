"""Runs in the API, under /api/v1/: what the run page shows, with the run
page's permission check (runs.view_run), and the replay of dead letters
(runs.change_run), on the run's own version or in place on the flow's
newest one, with its preview."""

import datetime as dt
from typing import Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema
from ninja.errors import HttpError

from config.roles import require
from runs import deadletters, decider, driver, migration
from runs.deadletter_views import chosen_steps
from runs.diagram import node_states, run_graph_config, run_steps, step_rows
from runs.ground.redaction import redact, secret_forms
from runs.models import Run

router = Router(tags=["runs"])


class RunFacts(Schema):
    """What every answer about one run says of it."""

    id: int
    flow: str
    version_number: int
    status: str
    is_test: bool
    started_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None


class RunSummaryOut(RunFacts):
    error: str


@router.get("/runs/{int:run_id}", response=RunSummaryOut, url_name="run")
def run_get(request: HttpRequest, run_id: int):
    """A run's status, who started it and when; its error once failed."""
    require(request.user, "runs.view_run")
    run = get_object_or_404(Run.objects.select_related("flow"), pk=run_id)
    return {
        "id": run.pk,
        "flow": run.flow.slug,
        "version_number": run.version_number,
        "status": run.status,
        "is_test": run.is_test,
        "started_by": run.started_by,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "error": redact(run.error, secret_forms()),
    }


RUN_STATUSES = Literal["pending", "running", "waiting", "succeeded", "failed",
                       "compensating", "compensated", "cancelled"]  # fmt: skip


@router.get("/runs", response=list[RunSummaryOut], url_name="runs")
def runs_list(
    request: HttpRequest,
    status: RUN_STATUSES | None = None,
    flow: str = "",
    limit: int = 50,
):
    """The newest runs (not test runs), optionally of one status or flow;
    at most ``limit`` of them (1 to 500)."""
    require(request.user, "runs.view_run")
    limit = max(1, min(limit, 500))
    flow = flow[:150].replace("\x00", "")
    found = Run.objects.select_related("flow").filter(is_test=False)
    if status:
        found = found.filter(status=status)
    if flow:
        found = found.filter(flow__slug=flow)
    forms = secret_forms()
    return [
        {"id": run.pk, "flow": run.flow.slug, "version_number": run.version_number,
         "status": run.status, "is_test": run.is_test, "started_by": run.started_by,
         "created_at": run.created_at, "finished_at": run.finished_at,
         "error": redact(run.error, forms)}
        for run in found.order_by("-created_at", "-id")[:limit]
    ]  # fmt: skip


class DeadLetterOut(Schema):
    group: str
    run_id: int
    node: str
    flow: str
    version_number: int
    error: str
    dead_since: dt.datetime


@router.get("/dead-letters", response=list[DeadLetterOut], url_name="dead_letters")
def dead_letters_list(request: HttpRequest):
    """The open dead letters as the inbox groups them (its size limit too);
    ``group`` is the inbox's group key, for a replay of the whole group."""
    require(request.user, "runs.change_run")
    groups, _ = deadletters.inbox_groups(deadletters.DeadLetterFilters())
    forms = secret_forms()
    return [
        {"group": group.key, "run_id": letter.step.run_id, "node": letter.step.node_id,
         "flow": group.flow.slug, "version_number": letter.step.run.version_number,
         "error": redact(letter.step.error or "", forms), "dead_since": letter.dead_since}
        for group in groups for letter in group.letters
    ]  # fmt: skip


class StepRowOut(Schema):
    node: str
    status: str
    attempt: int
    iterations: int


class NodeStateOut(Schema):
    status: str
    detail: str


class RunDiagramOut(Schema):
    run_id: int
    flow: str
    version_number: int
    status: str
    live: bool
    graph: dict
    connectors: list[dict]
    steps: list[StepRowOut]
    nodes: dict[str, NodeStateOut]


@router.get("/runs/{int:run_id}/diagram", response=RunDiagramOut, url_name="run_diagram")
def run_diagram(request: HttpRequest, run_id: int):
    """The graph of the version the run is pinned to, its step rows, and the
    state each node is painted with: a node's compensation (``<node>~undo``)
    shows on its node. ``live`` says whether the run still moves."""
    require(request.user, "runs.view_run")
    run = get_object_or_404(Run.objects.select_related("flow"), pk=run_id)
    rows = step_rows(run_steps(run))
    return {
        "run_id": run.pk,
        "flow": run.flow.slug,
        "version_number": run.version_number,
        "status": run.status,
        "live": run.status in decider.RUN_LIVE,
        **run_graph_config(run),
        "steps": rows,
        "nodes": node_states(rows),
    }


# --- dead letters: replay, on the run's own version or the newest --------------


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.username}"


class ReplayIn(Schema):
    # "same": the run's own version; "newest": move the run in place to its
    # flow's newest published version first (the fix just shipped).
    version: Literal["same", "newest"] = "same"


class ReplayedOut(Schema):
    run_id: int
    node: str
    version_number: int
    migrated_from: int | None = None
    checked: list[str] = []


def _moved(moved: migration.Moved) -> dict:
    return {"run_id": moved.run_id, "node": moved.node, "version_number": moved.to_version,
            "migrated_from": moved.from_version, "checked": moved.checked}  # fmt: skip


@router.post("/runs/{int:run_id}/steps/{node}/replay", response=ReplayedOut,
             url_name="step_replay")  # fmt: skip
def step_replay(request: HttpRequest, run_id: int, node: str, payload: ReplayIn | None = None):
    """Replay a dead-lettered step with its idempotency key. ``version:
    "newest"`` first moves the run, in place, to its flow's newest version
    (recorded as ``run.migrated``, with you as its actor); 409 names the
    nodes that keep it from moving, and nothing is written."""
    require(request.user, "runs.change_run")
    run = get_object_or_404(Run, pk=run_id)
    version = (payload or ReplayIn()).version
    try:
        if version == "newest":
            return _moved(driver.replay_on_newest(run.pk, node, actor=_actor(request)))
        driver.replay_dead_letter(run.pk, node, actor=_actor(request))
    except (decider.IllegalTransition, decider.StaleCommand) as exc:
        raise HttpError(409, str(exc)) from None
    run.refresh_from_db()
    return {"run_id": run.pk, "node": node, "version_number": run.version_number}


class StepsIn(Schema):
    steps: list[str] = Field(default=[], max_length=500)  # "<run id>:<node>"
    version: Literal["same", "newest"] = "same"


class RefusedOut(Schema):
    run_id: int
    node: str
    reason: str


class BulkReplayOut(Schema):
    replayed: list[ReplayedOut]
    refused: list[RefusedOut]


def _pairs(values: list[str]) -> list[tuple[int, str]]:
    pairs, bad = chosen_steps(values)
    if bad:
        raise HttpError(400, f"Not a step (run id:node): {', '.join(repr(v) for v in bad[:5])}.")
    return pairs


@router.post("/dead-letters/replay", response=BulkReplayOut, url_name="dead_letters_replay")
def dead_letters_replay(request: HttpRequest, payload: StepsIn):
    """Replay many dead letters, each in a transaction of its own; on the
    newest version each run that can move is moved, the others are named."""
    require(request.user, "runs.change_run")
    pairs = _pairs(payload.steps)
    actor = _actor(request)
    if payload.version == "newest":
        outcome = migration.replay_many_on_newest(pairs, actor=actor)
        return {"replayed": [_moved(m) for m in outcome.moved],
                "refused": [{"run_id": r, "node": n, "reason": why}
                            for r, n, why in outcome.refused]}  # fmt: skip
    replayed, refused = [], []
    for run_id, node in pairs:
        try:
            driver.replay_dead_letter(run_id, node, actor=actor)
        except (decider.IllegalTransition, decider.StaleCommand, Run.DoesNotExist) as exc:
            refused.append({"run_id": run_id, "node": node, "reason": str(exc)})
            continue
        number = Run.objects.filter(pk=run_id).values_list("version_number", flat=True).first()
        replayed.append({"run_id": run_id, "node": node, "version_number": number or 0})
    return {"replayed": replayed, "refused": refused}


class ProblemOut(Schema):
    node: str
    why: str


class PreviewLetterOut(Schema):
    run_id: int
    node: str
    flow: str
    from_version: int
    to_version: int
    allowed: bool
    refusal: str
    problems: list[ProblemOut]
    connector: str
    target: str
    side_effect: str
    idempotency_key: str


class PreviewOut(Schema):
    version: str
    runs: int
    letters: list[PreviewLetterOut]


@router.get("/dead-letters/replay-preview", response=PreviewOut,
            url_name="dead_letters_replay_preview")  # fmt: skip
def dead_letters_replay_preview(request: HttpRequest, version: Literal["same", "newest"] = "same"):
    """What a replay of these dead letters (``step=<run id>:<node>``, repeated)
    would do, before it is asked: for each, the version it resumes on,
    whether it may move there (and which nodes keep it from moving), and the
    call it makes again with which idempotency key."""
    require(request.user, "runs.change_run")
    pairs = _pairs(request.GET.getlist("step"))
    if not pairs:
        raise HttpError(400, "Name the dead letters: step=<run id>:<node>, repeated.")
    preview = deadletters.replay_preview(pairs, newest=version == "newest")
    calls = {call.letter.value: call for call in preview.calls}
    letters = []
    for letter in preview.letters:
        plan = preview.plans.get(letter.value)
        call = calls.get(letter.value)
        run = letter.step.run
        letters.append({
            "run_id": run.pk, "node": letter.step.node_id, "flow": run.flow.slug,
            "from_version": run.version_number,
            "to_version": plan.to_version if plan else run.version_number,
            "allowed": plan.allowed if plan else True,
            "refusal": plan.refusal if plan else "",
            "problems": [{"node": n, "why": why} for n, why in (plan.problems if plan else [])],
            "connector": call.connector if call else letter.step.connector,
            "target": call.target if call else "",
            "side_effect": call.side_effect if call else "none",
            "idempotency_key": (plan.idempotency_key if plan and plan.allowed
                                else letter.step.idempotency_key),
        })  # fmt: skip
    return {"version": version, "runs": preview.moving_runs, "letters": letters}
