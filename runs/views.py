"""Run pages: a run's steps and history, and the actions on it."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from config.roles import role_required
from flows.models import Flow
from runs import decider, driver
from runs.forms import DiscardForm, ReplayForm, StartRunForm
from runs.models import Event, Run, Step


def actor_of(request) -> str:
    return f"user:{request.user.username}"


@require_POST
@role_required("runs.change_run")
def run_start(request, slug):
    flow = get_object_or_404(Flow, slug=slug)
    form = StartRunForm(request.POST)
    if not form.is_valid():
        for error in form.errors.get("input", []):
            messages.error(request, f"Input: {error}")
        return redirect("flows:detail", slug=slug)
    try:
        run = driver.start_run(flow=flow, input=form.cleaned_data["input"], actor=actor_of(request))
    except driver.StartRefused as exc:
        messages.error(request, str(exc))
        return redirect("flows:detail", slug=slug)
    messages.success(request, f"Run {run.pk} started.")
    return redirect("runs:detail", run_id=run.pk)


@role_required("runs.view_run")
def run_detail(request, run_id):
    run = get_object_or_404(Run.objects.select_related("flow"), pk=run_id)
    context = {
        "run": run,
        "steps": Step.objects.filter(run=run).order_by("position"),
        "events": Event.objects.filter(stream=run.stream).order_by("seq"),
        "live": run.status in (decider.RUN_RUNNING, decider.RUN_WAITING),
        "can_act": request.user.has_perm("runs.change_run"),
    }
    if request.htmx and request.htmx.target == "run-body":
        return render(request, "runs/_run_body.html", context)
    return render(request, "runs/detail.html", context)


@require_POST
@role_required("runs.change_run")
def run_cancel(request, run_id):
    run = get_object_or_404(Run, pk=run_id)
    reason = request.POST.get("reason", "").strip()[:500] or "cancelled by an operator"
    try:
        driver.cancel_run(run.pk, actor=actor_of(request), reason=reason)
    except decider.IllegalTransition as exc:
        messages.error(request, f"Cannot cancel: {exc}.")
    else:
        messages.success(request, "Run cancelled.")
    return redirect("runs:detail", run_id=run.pk)


@require_POST
@role_required("runs.change_run")
def step_replay(request, run_id, node):
    run = get_object_or_404(Run, pk=run_id)
    form = ReplayForm(request.POST)
    if not form.is_valid():
        for error in form.errors.get("edited_input", []):
            messages.error(request, f"Edited input: {error}")
        return redirect("runs:detail", run_id=run.pk)
    edited = bool(request.POST.get("edited_input", "").strip())
    try:
        driver.replay_dead_letter(
            run.pk,
            node,
            actor=actor_of(request),
            edited_input=form.cleaned_data["edited_input"] if edited else None,
            edited=edited,
        )
    except decider.IllegalTransition as exc:
        messages.error(request, f"Cannot replay: {exc}.")
    else:
        note = " with the edited input (a new idempotency key)" if edited else ""
        messages.success(request, f"Step {node} replayed{note}.")
    return redirect("runs:detail", run_id=run.pk)


@require_POST
@role_required("runs.change_run")
def step_discard(request, run_id, node):
    run = get_object_or_404(Run, pk=run_id)
    form = DiscardForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the dead letter is discarded.")
        return redirect("runs:detail", run_id=run.pk)
    try:
        driver.discard_dead_letter(
            run.pk, node, actor=actor_of(request), reason=form.cleaned_data["reason"]
        )
    except decider.IllegalTransition as exc:
        messages.error(request, f"Cannot discard: {exc}.")
    else:
        messages.success(request, f"Step {node} discarded; the run has failed.")
    return redirect("runs:detail", run_id=run.pk)
