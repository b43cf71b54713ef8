"""Inventory pages. Thin: parse, authorise, call one service, render."""

import csv

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from config.roles import role_required
from connectors import base as connectors
from connectors.base import all_connectors
from connectors.outbound.drift import DRIFT_EVENT
from connectors.triggers.forms import start_form_for
from connectors.triggers.panel import trigger_panel
from flows import history, services
from flows import teams as teams_service
from flows.diagram import flow_diagram
from flows.forms import FlowForm, GraphForm, OwnerForm, ReviewForm, TeamForm
from flows.graph import InvalidGraph, validate
from flows.inventory import (
    InventoryFilter,
    audit_findings,
    failing_silently,
    inventory,
    with_health,
)
from flows.models import Criticality, Flow, Kind, Status, Team
from flows.vite import diagram_bundle, editor_bundle
from runs import expressions
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run

EMPTY_GRAPH = {"nodes": [{"id": "start", "type": "trigger.manual"}], "edges": []}


def graph_problems(document) -> list[str]:
    try:
        validate(document)
    except InvalidGraph as exc:
        return [str(error) for error in exc.errors]
    return []


def connector_catalogue() -> list[dict]:
    return [
        {
            "key": key,
            "label": cls.label,
            "category": cls.category,
            # A switch's ports come from its config: show its example's.
            "ports": cls().ports_for(cls.example_config),
        }
        for key, cls in all_connectors().items()
    ]


@role_required("flows.view_flow")
def inventory_list(request):
    filters = InventoryFilter.from_params(request.GET)
    context = {"flows": with_health(list(inventory(filters))), "filters": filters}
    if request.htmx and request.htmx.target == "inventory-results":
        return render(request, "flows/_inventory_table.html", context)
    context.update(
        owners=get_user_model().objects.filter(owned_flows__isnull=False).distinct(),
        teams=Team.objects.all(),
        statuses=Status.choices,
        criticalities=Criticality.choices,
        kinds=Kind.choices,
    )
    return render(request, "flows/inventory.html", context)


def flow_page_context(request, flow: Flow) -> dict:
    events = Event.objects.filter(stream=flow.stream).order_by("-seq")
    can_edit = services.user_can_edit_flow(request.user, flow)
    return {
        "flow": flow,
        "history": [(event, history.describe(event)) for event in events.exclude(type=DRIFT_EVENT)],
        "drift": events.filter(type=DRIFT_EVENT)[:20],
        "can_edit": can_edit,
        "diagram": flow_diagram(flow, may_edit=can_edit),
        "bundle": diagram_bundle(),
        "owner_form": OwnerForm(initial={"owner": flow.owner_id}),
        "review_form": ReviewForm(),
        "start_form": start_form_for(flow),
        "trigger": trigger_panel(request, flow),
        "can_run": request.user.has_perm("runs.change_run"),
        # Test runs of the draft are not the flow's record in service.
        "runs": Run.objects.filter(flow=flow, is_test=False).order_by("-id")[:15],
        "test_runs": Run.objects.filter(flow=flow, is_test=True).count(),
        "versions": flow.versions.all()[:5],
        "node_breakers": node_breakers(flow),
    }


def node_breakers(flow: Flow) -> list[dict]:
    """The breakers the published version's nodes call through, with their
    state. A target built from an expression is known only per run."""
    from connectors.outbound.models import Breaker

    version = flow.versions.filter(number=flow.published_version).first()
    if version is None:
        return []
    found = []
    for node in version.graph["nodes"]:
        try:
            connector = connectors.get(node["type"])
        except connectors.UnknownConnector:
            continue
        if connector.inline or connector.is_trigger:
            continue
        try:
            target = connector.breaker_target(connector.Config.model_validate(node["config"]))
        except ValueError:
            target = None
        if target and expressions.has_expression(target):
            target = None
        found.append({"node": node["id"], "target": target})
    states = {b.target: b for b in Breaker.objects.filter(target__in=[f["target"] for f in found])}
    for entry in found:
        breaker = states.get(entry["target"])
        entry["state"] = breaker.state if breaker else "closed"
        entry["probe_at"] = breaker.probe_at if breaker else None
    return found


@role_required("flows.view_flow")
def flow_detail(request, slug):
    flow = get_object_or_404(Flow.objects.select_related("owner", "team"), slug=slug)
    return render(request, "flows/detail.html", flow_page_context(request, flow))


@role_required("flows.add_flow")
def flow_create(request):
    form = FlowForm(request.POST or None, initial={"owner": request.user.pk})
    if request.method == "POST" and form.is_valid():
        try:
            flow = services.flow_create(actor=request.user, data=form.cleaned_data)
        except services.FlowError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"“{flow.name}” is in the inventory as a draft.")
            return redirect("flows:detail", slug=flow.slug)
    return render(request, "flows/form.html", {"form": form, "flow": None})


def _editable_flow(request, slug) -> Flow:
    flow = get_object_or_404(Flow.objects.select_related("owner", "team"), slug=slug)
    if not services.user_can_edit_flow(request.user, flow):
        raise PermissionDenied(f"Only members of the team {flow.team} may edit this flow.")
    return flow


@role_required("flows.change_flow")
def flow_edit(request, slug):
    flow = _editable_flow(request, slug)
    form = FlowForm(request.POST or None, flow=flow, initial=FlowForm.initial_for(flow))
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        expected = data.pop("version")
        try:
            flow = services.flow_update(
                flow=flow, actor=request.user, data=data, expected_version=expected
            )
        except services.FlowError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Saved.")
            return redirect("flows:detail", slug=flow.slug)
    return render(request, "flows/form.html", {"form": form, "flow": flow})


@require_POST
@role_required("flows.change_flow")
def flow_transition(request, slug, action):
    flow = _editable_flow(request, slug)
    try:
        flow = services.flow_transition(
            flow=flow,
            actor=request.user,
            action=action,
            reason=request.POST.get("reason", "")[:500],
        )
    except services.FlowError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"“{flow.name}” is now {flow.get_status_display().lower()}.")
    return redirect("flows:detail", slug=flow.slug)


def _facts_response(request, flow: Flow, status: int = 200, **extra):
    """The facts panel, for htmx inline edits; a full redirect otherwise."""
    if request.htmx:
        context = flow_page_context(request, flow)
        context.update(extra)
        return render(request, "flows/_facts.html", context, status=status)
    for error in extra.get("errors", []):
        messages.error(request, error)
    return redirect("flows:detail", slug=flow.slug)


@require_POST
@role_required("flows.change_flow")
def flow_change_owner(request, slug):
    flow = _editable_flow(request, slug)
    form = OwnerForm(request.POST)
    if not form.is_valid():
        errors = [f"Owner: {e}" for e in form.errors.get("owner", ["invalid choice"])]
        return _facts_response(request, flow, status=422, errors=errors)
    flow = services.flow_change_owner(
        flow=flow, actor=request.user, owner=form.cleaned_data["owner"]
    )
    return _facts_response(request, flow, notice="Owner changed.")


@require_POST
@role_required("flows.change_flow")
def flow_record_review(request, slug):
    flow = _editable_flow(request, slug)
    form = ReviewForm(request.POST)
    if not form.is_valid():
        errors = [f"Note: {e}" for e in form.errors.get("note", [])]
        return _facts_response(request, flow, status=422, errors=errors)
    try:
        flow = services.flow_record_review(
            flow=flow, actor=request.user, note=form.cleaned_data["note"]
        )
    except services.FlowError as exc:
        return _facts_response(request, flow, status=422, errors=[str(exc)])
    return _facts_response(request, flow, notice="Review recorded.")


@role_required("flows.audit_inventory")
def audit(request):
    findings = audit_findings()
    inactive_owners = get_user_model().objects.filter(is_active=False, owned_flows__isnull=False)
    context = {
        "findings": findings,
        "silent": failing_silently(),
        "inactive_owners": inactive_owners.distinct(),
        "totals": {
            "flows": Flow.objects.exclude(status=Status.RETIRED).count(),
            "external": Flow.objects.exclude(status=Status.RETIRED)
            .filter(kind=Kind.EXTERNAL)
            .count(),
            "with_findings": len(findings),
        },
        "today": clock.now().date(),
    }
    return render(request, "flows/audit.html", context)


@role_required("flows.audit_inventory")
def audit_csv(request):
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="inventory-audit.csv"'
    writer = csv.writer(response)
    writer.writerow(
        ["slug", "name", "kind", "status", "criticality", "owner", "team",
         "last_reviewed_on", "review_due_on", "problems"]
    )  # fmt: skip
    for finding in audit_findings():
        flow = finding.flow
        writer.writerow(
            [
                flow.slug,
                _csv_safe(flow.name),
                flow.kind,
                flow.status,
                flow.criticality,
                flow.owner.username if flow.owner else "",
                _csv_safe(flow.team.name) if flow.team else "",
                flow.last_reviewed_on.isoformat() if flow.last_reviewed_on else "",
                flow.review_due_on.isoformat(),
                "; ".join(finding.problems),
            ]
        )
    return response


def _csv_safe(text: str) -> str:
    # A cell starting with =, +, - or @ is a formula to spreadsheet programs.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


@role_required("flows.manage_teams")
def teams(request):
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        team = _save_team(request, form, team=None)
        if team is not None:
            messages.success(request, f"Team “{team.name}” created.")
            return redirect("flows:teams")
    return render(request, "flows/teams.html", {"teams": Team.objects.all(), "form": form})


@role_required("flows.manage_teams")
def team_edit(request, team_id):
    team = get_object_or_404(Team, pk=team_id)
    form = TeamForm(request.POST or None, team=team)
    if request.method == "POST" and form.is_valid():
        saved = _save_team(request, form, team=team)
        if saved is not None:
            messages.success(request, f"Team “{saved.name}” saved.")
            return redirect("flows:teams")
    return render(request, "flows/team_form.html", {"team": team, "form": form})


def _save_team(request, form: TeamForm, *, team: Team | None) -> Team | None:
    """The team as saved, or None with the refusal added to the form."""
    data = form.cleaned_data
    try:
        return teams_service.team_save(
            team=team,
            actor=request.user,
            name=data["name"],
            restricts_edits=data["restricts_edits"],
            members=data["members"],
        )
    except teams_service.TeamError as exc:
        form.add_error(None, str(exc))
        return None


@role_required("flows.change_flow")
def flow_graph(request, slug):
    """The graph as JSON: save a draft, check it, publish it as a new version."""
    flow = _editable_flow(request, slug)
    form = GraphForm(request.POST or None, initial={"graph": flow.draft_graph or EMPTY_GRAPH})
    problems: list[str] = []
    if request.method == "POST" and form.is_valid():
        try:
            flow = services.flow_save_draft(
                flow=flow, actor=request.user, graph=form.cleaned_data["graph"]
            )
            if request.POST.get("action") == "publish":
                version = services.flow_publish(
                    flow=flow, actor=request.user, note=form.cleaned_data["note"]
                )
                messages.success(request, f"Published version {version.number}.")
                return redirect("flows:detail", slug=flow.slug)
        except services.InvalidDraft as exc:
            problems = [str(error) for error in exc.errors]
        except services.FlowError as exc:
            form.add_error(None, str(exc))
        else:
            problems = graph_problems(flow.draft_graph)
            if not problems:
                messages.success(request, "Draft saved; it is valid and ready to publish.")
    elif flow.draft_graph is not None:
        problems = graph_problems(flow.draft_graph)
    context = {
        "flow": flow,
        "form": form,
        "problems": problems,
        "versions": flow.versions.all()[:20],
        "connectors": connector_catalogue(),
    }
    status = 422 if problems and request.method == "POST" else 200
    return render(request, "flows/graph.html", context, status=status)


@role_required("flows.view_flow")
def flow_editor(request, slug):
    """The visual editor: a canvas that talks to /api/v1/ only. Read-only for
    those who may not edit this flow."""
    flow = get_object_or_404(Flow.objects.select_related("owner", "team"), slug=slug)
    if flow.kind != "ledgerflow":
        raise Http404("This automation runs outside Ledgerflow; it has no graph to edit.")
    config = {
        "slug": flow.slug,
        "can_edit": services.user_can_edit_flow(request.user, flow),
        "api": "/api/v1/",
    }
    context = {
        "flow": flow,
        "can_edit": config["can_edit"],
        "bundle": editor_bundle(),
        "editor_config": config,
    }
    return render(request, "flows/editor.html", context)
