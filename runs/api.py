"""Runs in the API, under /api/v1/runs/: what the run page shows, with the
run page's permission check (runs.view_run)."""

import datetime as dt

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema

from config.roles import require
from runs import decider
from runs.diagram import node_states, run_graph_config, run_steps, step_rows
from runs.ground.redaction import redact, secret_forms
from runs.models import Run

router = Router(tags=["runs"])


class RunSummaryOut(Schema):
    id: int
    flow: str
    version_number: int
    status: str
    is_test: bool
    started_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
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
