"""The editor's API: a flow's draft, its validation, publishing and its
versions, under /api/v1/flows/. The same permission checks as the pages:
reading needs flows.view_flow; saving and publishing need flows.change_flow
and, for a team that restricts edits, membership."""

import datetime as dt

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from ninja.errors import HttpError

from connectors.credentials.models import Credential
from flows import services
from flows.diff import graph_diff
from flows.graph import InvalidGraph, validate
from flows.models import Flow, FlowVersion
from flows.transfer import export_flow

router = Router(tags=["flows"])


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise HttpError(403, f"Your role does not allow this ({permission}).")


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


@router.get("/flows/{slug}/draft", response=DraftOut, url_name="flow_draft")
def draft_get(request: HttpRequest, slug: str):
    """The graph being edited and its revision; ``graph`` is null before the
    first save. ``errors`` is what publishing would refuse."""
    flow = _flow(request, slug)
    return {
        **_revision(flow),
        "slug": flow.slug,
        "name": flow.name,
        "status": flow.status,
        "can_edit": services.user_can_edit_flow(request.user, flow),
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


@router.put(
    "/flows/{slug}/draft",
    response={200: SavedOut, 409: StaleOut},
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
        return Status(409, _stale(exc))
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
    errors: list[GraphErrorOut]


@router.post(
    "/flows/{slug}/publish",
    response={200: PublishedOut, 409: StaleOut, 422: InvalidOut},
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
        return Status(409, _stale(exc))
    except services.InvalidDraft as exc:
        errors = [{"message": e.message, "node": e.node, "field": e.field} for e in exc.errors]
        return Status(422, {"detail": "The draft cannot be published.", "errors": errors})
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


class CredentialNameOut(Schema):
    name: str
    type: str


@router.get("/credentials", response=list[CredentialNameOut], url_name="credential_names")
def credential_names(request: HttpRequest):
    """The store's credentials by name and type, for a node's credential
    field. Never a secret, nor even a non-secret field."""
    _require(request, "flows.change_flow")
    return list(Credential.objects.order_by("name").values("name", "type"))
