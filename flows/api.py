"""The editor's API: a flow's draft, its validation, publishing and its
versions, under /api/v1/flows/. The same permission checks as the pages:
reading needs flows.view_flow; saving and publishing need flows.change_flow
and, for a team that restricts edits, membership."""

import datetime as dt
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from ninja import Router, Schema, Status
from ninja.errors import HttpError
from pydantic import Field

from config.roles import require
from config.tokens import idempotency
from config.tokens.errors import ApiError, ErrorEnvelope, ErrorOut, envelop
from connectors.credentials.models import Credential
from connectors.triggers import testhooks
from connectors.triggers.forms import input_problems
from flows import samples, services, testruns
from flows.diff import graph_diff
from flows.graph import InvalidGraph, validate
from flows.models import Flow, FlowVersion
from flows.transfer import export_flow
from runs import driver
from runs.api import RunFacts
from runs.ground import plainjson
from runs.ground.redaction import redact, secret_forms
from runs.models import Run, Step

router = Router(tags=["flows"])


def _require(request: HttpRequest, permission: str) -> None:
    require(request.user, permission)


def _flow(request: HttpRequest, slug: str) -> Flow:
    _require(request, "flows.view_flow")
    return get_object_or_404(Flow.objects.select_related("team"), slug=slug)


def _editable(request: HttpRequest, slug: str) -> Flow:
    _require(request, "flows.change_flow")
    flow = _flow(request, slug)
    if not services.user_can_edit_flow(request.user, flow):
        raise HttpError(403, f"Only members of the team {flow.team} may edit this flow.")
    return flow


class GraphErrorOut(Schema):
    message: str
    node: str | None = None
    field: str | None = None


def problems(graph) -> list[dict]:
    """Every error the server's own validation finds, at once."""
    try:
        validate(graph)
    except InvalidGraph as exc:
        return [{"message": e.message, "node": e.node, "field": e.field} for e in exc.errors]
    return []


class RevisionOut(Schema):
    revision: int
    saved_by: str
    saved_at: dt.datetime | None


def _revision(flow: Flow) -> dict:
    current = services.draft_revision(flow)
    return {"revision": current.number, "saved_by": current.saved_by, "saved_at": current.saved_at}


class DraftOut(RevisionOut):
    slug: str
    name: str
    status: str
    can_edit: bool
    published_version: int
    graph: dict | None
    errors: list[GraphErrorOut]
    # Where deliveries start test runs of this draft (webhook drafts, for
    # those who may edit); null otherwise.
    test_webhook_url: str | None = None


def _test_webhook_url(request: HttpRequest, flow: Flow, can_edit: bool) -> str | None:
    if not can_edit or testhooks.draft_webhook(flow.draft_graph) is None:
        return None
    path = reverse("triggers:test_webhook", kwargs={"token": testhooks.token_for(flow.pk)})
    return request.build_absolute_uri(path)


@router.get("/flows/{slug}/draft", response=DraftOut, url_name="flow_draft")
def draft_get(request: HttpRequest, slug: str):
    """The graph being edited and its revision; ``graph`` is null before the
    first save. ``errors`` is what publishing would refuse."""
    flow = _flow(request, slug)
    can_edit = services.user_can_edit_flow(request.user, flow)
    return {
        **_revision(flow),
        "slug": flow.slug,
        "name": flow.name,
        "status": flow.status,
        "can_edit": can_edit,
        "test_webhook_url": _test_webhook_url(request, flow, can_edit),
        "published_version": flow.published_version,
        "graph": flow.draft_graph,
        "errors": problems(flow.draft_graph) if flow.draft_graph is not None else [],
    }


class DraftIn(Schema):
    graph: dict
    # The revision the editor loaded or last saved; another save since -> 409.
    base_revision: int


class SavedOut(RevisionOut):
    errors: list[GraphErrorOut]


class StaleOut(RevisionOut):
    detail: str
    error: ErrorOut


@router.put(
    "/flows/{slug}/draft",
    response={200: SavedOut, 409: StaleOut | ErrorEnvelope},
    url_name="flow_draft_save",
)
def draft_save(request: HttpRequest, slug: str, payload: DraftIn):
    """Save the draft. A draft may be incomplete: the answer lists what
    publishing would refuse. 409 when someone saved since ``base_revision``,
    naming who; send again with their revision to overwrite."""
    flow = _editable(request, slug)
    try:
        flow = services.flow_save_draft(
            flow=flow, actor=request.user, graph=payload.graph, base_revision=payload.base_revision
        )
    except services.StaleDraft as exc:
        return Status(409, envelop(409, _stale(exc)))
    except services.FlowError as exc:
        raise HttpError(400, str(exc)) from None
    return {**_revision(flow), "errors": problems(flow.draft_graph)}


def _stale(exc: services.StaleDraft) -> dict:
    current = exc.current
    return {
        "detail": str(exc),
        "revision": current.number,
        "saved_by": current.saved_by,
        "saved_at": current.saved_at,
    }


class ValidateIn(Schema):
    # Omitted: the saved draft.
    graph: dict | None = None


class ValidationOut(Schema):
    valid: bool
    errors: list[GraphErrorOut]


@router.post("/flows/{slug}/validate", response=ValidationOut, url_name="flow_validate")
def draft_validate(request: HttpRequest, slug: str, payload: ValidateIn | None = None):
    """Check a graph (or the saved draft) as publishing would; every error
    with its node and field. Changes nothing."""
    flow = _flow(request, slug)
    graph = payload.graph if payload and payload.graph is not None else flow.draft_graph
    errors = problems(graph)
    return {"valid": not errors, "errors": errors}


class PublishIn(Schema):
    note: str = ""
    # When given, publish only if the draft is still this revision.
    base_revision: int | None = None


class NodeChangeOut(Schema):
    id: str
    fields: list[str]


class DiffOut(Schema):
    added: list[str]
    removed: list[str]
    changed: list[NodeChangeOut]
    edges_added: list[str]
    edges_removed: list[str]
    settings_changed: bool


class PublishedOut(Schema):
    number: int
    diff: DiffOut


class InvalidOut(Schema):
    detail: str
    error: ErrorOut
    errors: list[GraphErrorOut]


@router.post(
    "/flows/{slug}/publish",
    response={200: PublishedOut, 409: StaleOut | ErrorEnvelope, 422: InvalidOut | ErrorEnvelope},
    url_name="flow_publish",
)
def draft_publish(request: HttpRequest, slug: str, payload: PublishIn | None = None):
    """Publish the saved draft as the next immutable version; the answer
    carries its diff against the version before."""
    payload = payload or PublishIn()
    flow = _editable(request, slug)
    previous = flow.versions.filter(number=flow.published_version).first()
    try:
        version = services.flow_publish(
            flow=flow,
            actor=request.user,
            note=payload.note[:2000],
            base_revision=payload.base_revision,
        )
    except services.StaleDraft as exc:
        return Status(409, envelop(409, _stale(exc)))
    except services.InvalidDraft as exc:
        errors = [{"message": e.message, "node": e.node, "field": e.field} for e in exc.errors]
        answer = {"detail": "The draft cannot be published.", "errors": errors}
        return Status(422, envelop(422, answer, {"errors": errors}))
    except services.FlowError as exc:
        raise HttpError(400, str(exc)) from None
    return {
        "number": version.number,
        "diff": graph_diff(previous.graph if previous else None, version.graph),
    }


class VersionSummaryOut(Schema):
    number: int
    published_by: str
    published_at: dt.datetime
    note: str
    graph_hash: str


class VersionOut(VersionSummaryOut):
    graph: dict


def _summary(version: FlowVersion) -> dict:
    return {
        "number": version.number,
        "published_by": version.published_by.removeprefix("user:"),
        "published_at": version.published_at,
        "note": version.note,
        "graph_hash": version.graph_hash,
    }


@router.get("/flows/{slug}/versions", response=list[VersionSummaryOut], url_name="flow_versions")
def versions_list(request: HttpRequest, slug: str):
    """Published versions, newest first."""
    flow = _flow(request, slug)
    return [_summary(v) for v in flow.versions.all()]


@router.get("/flows/{slug}/versions/{int:number}", response=VersionOut, url_name="flow_version")
def version_get(request: HttpRequest, slug: str, number: int):
    flow = _flow(request, slug)
    version = get_object_or_404(FlowVersion, flow=flow, number=number)
    return {**_summary(version), "graph": version.graph}


@router.get("/flows/{slug}/export", url_name="flow_export")
def flow_export(request: HttpRequest, slug: str):
    """The flow as a file, byte for byte what `manage.py export_flow` writes
    (inventory facts and the latest published graph)."""
    flow = _flow(request, slug)
    response = HttpResponse(export_flow(flow), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{flow.slug}.json"'
    return response


class PreviewIn(Schema):
    node: str
    # The text to render, or the path of a field of the node that holds it
    # ("config.fields.amount"); neither: only the sample data is answered.
    expression: str | None = None
    field: str | None = None
    # A trigger input to try instead of the pinned or recorded one.
    sample: Any = None
    # The editor's graph, saved or not; omitted: the saved draft.
    graph: dict | None = None
    # For a field of the node's compensation, which also reads its output.
    undo: bool = False


class PreviewOut(Schema):
    value: Any = None
    error: str | None = None
    # What the node's expressions read here, and where each value came from.
    context: dict
    sources: dict[str, str]


@router.post(
    "/flows/{slug}/expressions/preview", response=PreviewOut, url_name="expression_preview"
)
def expression_preview(request: HttpRequest, slug: str, payload: PreviewIn):
    """Render an expression at a node against sample data (the draft's
    pinned outputs, else the latest run's) through the engine's own sandbox
    and time budget. A failed render is an answer with ``error`` in words."""
    flow = _editable(request, slug)
    saved = flow.draft_graph or {}
    graph = payload.graph if payload.graph is not None else saved
    if "pinned" not in graph and isinstance(saved, dict) and "pinned" in saved:
        # Pinning is its own action on the saved draft; an editor's graph
        # that does not carry the pins still previews with them.
        graph = {**graph, "pinned": saved["pinned"]}
    try:
        sample = samples.sample_context(
            flow=flow,
            graph=graph,
            node=payload.node,
            trigger_input=payload.sample,
            undo=payload.undo,
        )
        expression = payload.expression
        if expression is None and payload.field:
            expression = samples.field_text(graph, payload.node, payload.field)
    except samples.PreviewError as exc:
        raise HttpError(400, str(exc)) from None
    rendered = samples.preview(sample, expression) if expression is not None else None
    return {
        "value": rendered.value if rendered else None,
        "error": rendered.error if rendered else None,
        "context": sample.data,
        "sources": sample.sources,
    }


class CredentialNameOut(Schema):
    name: str
    type: str


@router.get("/credentials", response=list[CredentialNameOut], url_name="credential_names")
def credential_names(request: HttpRequest):
    """The store's credentials by name and type, for a node's credential
    field. Never a secret, nor even a non-secret field."""
    _require(request, "flows.change_flow")
    return list(Credential.objects.order_by("name").values("name", "type"))


# --- test runs of the draft ----------------------------------------------------


class TestRunIn(Schema):
    # The trigger's input, as a delivery or the start form would give it.
    input: Any = None
    # Run nodes with side effects (anything but "none") for real.
    confirm_side_effects: bool = False
    # "Run this step": only this node, the nodes before it satisfied from
    # pinned data or the last test run.
    node: str | None = None


class TestStepOut(Schema):
    node: str
    connector: str
    status: str
    attempts: int
    port: str
    input: Any = None
    output: Any = None
    error: str
    # "pinned" or "test run <id>" when the output was carried in, not run.
    carried_from: str | None = None


class TestRunOut(Schema):
    id: int
    status: str
    # Finished, or waiting on a person (a dead letter): polling may stop.
    settled: bool
    is_test: bool
    input: Any = None
    output: Any = None
    error: str
    started_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    url: str
    steps: list[TestStepOut]


class TestRunSummaryOut(Schema):
    id: int
    status: str
    input: Any = None
    created_at: dt.datetime


class SideEffectOut(Schema):
    node: str
    type: str
    side_effect: str


class UnconfirmedOut(Schema):
    detail: str
    error: ErrorOut
    nodes: list[SideEffectOut]


class MissingInputsOut(Schema):
    detail: str
    error: ErrorOut
    missing: list[str]


def _test_run(run: Run) -> dict:
    """The run and its steps, with every registered secret redacted as on
    the run pages (the log already holds them redacted; this also covers
    secrets registered since)."""
    forms = secret_forms()
    steps = list(Step.objects.filter(run=run).order_by("position"))
    carried = testruns.pinned_sources(run)
    return {
        "id": run.pk,
        "status": run.status,
        "settled": testruns.is_settled(run, steps),
        "is_test": run.is_test,
        "input": redact(run.input, forms),
        "output": redact(run.output, forms),
        "error": redact(run.error, forms),
        "started_by": run.started_by,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "url": reverse("runs:detail", kwargs={"run_id": run.pk}),
        "steps": [
            {
                "node": step.node_id,
                "connector": step.connector,
                "status": step.status,
                "attempts": step.attempt,
                "port": step.port,
                "input": redact(step.input, forms),
                "output": redact(step.output, forms),
                "error": redact(step.error, forms),
                "carried_from": carried.get(step.node_id),
            }
            for step in steps
        ],
    }


@router.post(
    "/flows/{slug}/test-runs",
    response={
        200: TestRunOut,
        409: UnconfirmedOut | ErrorEnvelope,
        422: InvalidOut | MissingInputsOut | ErrorEnvelope,
    },
    url_name="flow_test_runs",
)
def test_run_create(request: HttpRequest, slug: str, payload: TestRunIn):
    """Run the saved draft (not a published version) on a sample input
    through the engine, as a test run. 409 lists the nodes with side effects
    until ``confirm_side_effects`` is true; 422 when the draft cannot run or
    a single step lacks outputs of the nodes before it."""
    flow = _editable(request, slug)
    problem = plainjson.problem(payload.input)
    if problem:
        raise HttpError(400, f"The input cannot be stored: {problem}")
    try:
        run = testruns.test_run_start(
            flow=flow,
            actor=services.actor_of(request.user),
            input=payload.input if payload.input is not None else {},
            confirm_side_effects=payload.confirm_side_effects,
            node=payload.node,
        )
    except testruns.SideEffectsUnconfirmed as exc:
        nodes = [vars(n) for n in exc.nodes]
        return Status(409, envelop(409, {"detail": str(exc), "nodes": nodes}, {"nodes": nodes}))
    except testruns.StepInputsMissing as exc:
        answer = {"detail": str(exc), "missing": exc.missing}
        return Status(422, envelop(422, answer, {"missing": exc.missing}))
    except services.InvalidDraft as exc:
        errors = [{"message": e.message, "node": e.node, "field": e.field} for e in exc.errors]
        answer = {"detail": "The draft cannot run yet.", "errors": errors}
        return Status(422, envelop(422, answer, {"errors": errors}))
    except services.FlowError as exc:
        raise HttpError(400, str(exc)) from None
    return _test_run(run)


@router.get(
    "/flows/{slug}/test-runs", response=list[TestRunSummaryOut], url_name="flow_test_run_list"
)
def test_run_list(request: HttpRequest, slug: str):
    """The flow's latest test runs, newest first (the editor pre-fills its
    sample input from the first)."""
    _require(request, "runs.view_run")
    flow = _flow(request, slug)
    forms = secret_forms()
    runs = Run.objects.filter(flow=flow, is_test=True).order_by("-id")[:10]
    return [
        {"id": r.pk, "status": r.status, "input": redact(r.input, forms),
         "created_at": r.created_at}
        for r in runs
    ]  # fmt: skip


@router.get("/flows/{slug}/test-runs/{int:run_id}", response=TestRunOut, url_name="flow_test_run")
def test_run_get(request: HttpRequest, slug: str, run_id: int):
    """A test run's status and, per node, its status, attempts, input,
    output and error."""
    _require(request, "runs.view_run")
    flow = _flow(request, slug)
    run = get_object_or_404(Run, pk=run_id, flow=flow, is_test=True)
    return _test_run(run)


# --- starting a run ---------------------------------------------------------------


class RunStartIn(Schema):
    # The trigger's input, checked against the manual trigger's input schema
    # as the start form does. Omitted: {}.
    input: Any = None
    # A published version; omitted: the newest.
    version: int | None = Field(None, ge=1, le=2**31 - 1)


class RunOut(RunFacts):
    url: str


def run_out(run: Run, slug: str) -> dict:
    return {
        "id": run.pk,
        "flow": slug,
        "version_number": run.version_number,
        "status": run.status,
        "is_test": run.is_test,
        "started_by": run.started_by,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "url": reverse("runs:detail", kwargs={"run_id": run.pk}),
    }


@router.post("/flows/{slug}/runs", response={201: RunOut}, url_name="run_start", tags=["runs"])
def run_start(request: HttpRequest, slug: str, payload: RunStartIn):
    """Start a run of a published version, as the flow page's start form
    does. Send an ``Idempotency-Key`` header to make retries safe: the same
    key and body answer the first run again; the same key with another body
    is 409. 409 also when the flow cannot run now (a draft, paused, no such
    version); 422 when the input breaks the trigger's input schema."""
    _require(request, "runs.change_run")
    flow = get_object_or_404(Flow.objects.select_related("team"), slug=slug)
    given = payload.input if payload.input is not None else {}

    def act():
        problem = plainjson.problem(given)
        if problem:
            raise ApiError(400, f"The input cannot be stored: {problem}")
        wrong = input_problems(flow, given)
        if wrong:
            raise ApiError(422, "The input does not fit the trigger's input schema.", wrong)
        try:
            run = driver.start_run(
                flow=flow, input=given, actor=services.actor_of(request.user),
                version_number=payload.version,
            )  # fmt: skip
        except driver.StartRefused as exc:
            raise ApiError(409, str(exc)) from None
        return 201, run_out(run, flow.slug)

    status, body = idempotency.once(
        request,
        operation=f"POST /flows/{slug}/runs",
        request={"input": given, "version": payload.version},
        act=act,
    )
    return Status(status, body)
