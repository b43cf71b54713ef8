"""Run pages: a run's steps and history, and the actions on it."""

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from config.roles import role_required
from connectors.triggers.forms import start_form_for
from flows.models import Flow
from flows.views import flow_page_context
from flows.vite import diagram_bundle
from runs import decider, driver, live, migration, replay_edits, selectors
from runs.diagram import STATES_ELEMENT, run_graph_config, run_steps, step_rows
from runs.forms import DiscardForm, ReplayForm
from runs.ground.models import Event
from runs.models import Run
from runs.timeline import timeline


def actor_of(request) -> str:
    return f"user:{request.user.username}"


def back_to(request, run: Run):
    """Where a step action returns: the page it was taken on (the
    dead-letter inbox, say) when that is a page of this site, else the run."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("runs:detail", run_id=run.pk)


@require_POST
@role_required("runs.change_run")
def run_start(request, slug):
    flow = get_object_or_404(Flow.objects.select_related("owner", "team"), slug=slug)
    form = start_form_for(flow, data=request.POST)
    if not form.is_valid():
        # The flow page again, with the typed values and each field's error.
        context = flow_page_context(request, flow)
        context["start_form"] = form
        return render(request, "flows/detail.html", context, status=422)
    try:
        run = driver.start_run(flow=flow, input=form.run_input(), actor=actor_of(request))
    except driver.StartRefused as exc:
        messages.error(request, str(exc))
        return redirect("flows:detail", slug=slug)
    messages.success(request, f"Run {run.pk} started.")
    return redirect("runs:detail", run_id=run.pk)


@role_required("runs.view_run")
def run_list(request):
    """Runs across every flow, newest first, filtered, in keyset pages."""
    filters = selectors.RunFilters.from_params(request.GET)
    after, status = request.GET.get("after", "")[:200], 200
    try:
        page = selectors.runs_page(filters, after=after)
    except selectors.BadCursor as exc:
        filters.errors["after"] = str(exc)
        page, after, status = selectors.runs_page(filters), "", 400
    context = {
        "filters": filters,
        "page": page,
        "after": after,
        "statuses": selectors.STATUSES,
        "triggers": [(key, label) for key, (label, _) in selectors.TRIGGERS.items()],
        "next_query": _with_cursor(request.GET, page.next_cursor),
        "first_query": _with_cursor(request.GET, ""),
    }
    if request.htmx and request.htmx.target == "runs-results":
        return render(request, "runs/_list_results.html", context, status=status)
    return render(request, "runs/list.html", context, status=status)


def _with_cursor(params, cursor: str) -> str:
    query = params.copy()
    query.pop("after", None)
    if cursor:
        query["after"] = cursor
    return query.urlencode()


@role_required("runs.view_run")
def run_detail(request, run_id):
    run = get_object_or_404(Run.objects.select_related("flow"), pk=run_id)
    steps = run_steps(run)
    context = {
        "run": run,
        "steps": steps,
        "timeline": timeline(Event.objects.filter(stream=run.stream).order_by("seq")),
        "live": run.status in decider.RUN_LIVE,
        # "channels": a websocket says when to fetch the live fragment;
        # "polling": the fragment asks every 2 s (the embedded default).
        "live_updates": live.mode(),
        "can_act": request.user.has_perm("runs.change_run"),
        # Inside the live fragment: each update repaints the diagram.
        "diagram_states": json.dumps({"steps": step_rows(steps)}),
        "newest_plans": _newest_plans(request, run, steps),
    }
    # Live updates ask for the live fragment; "run-body" is what pages loaded
    # before it existed still ask for, and the fragment holds that too.
    if request.htmx and request.htmx.target in ("run-live", "run-body"):
        drawn = request.GET.get("drawn", "")
        if drawn.isdigit() and int(drawn) != run.version_number:
            # The run moved to another version since its diagram was drawn:
            # the page loads again, and draws the graph the run now follows.
            return HttpResponseClientRefresh()
        return render(request, "runs/_run_live.html", context)
    context["diagram"] = {**run_graph_config(run), "states": STATES_ELEMENT}
    context["bundle"] = diagram_bundle()
    return render(request, "runs/detail.html", context)


def _newest_plans(request, run: Run, steps) -> dict:
    """For each dead letter of a live run behind its flow's newest version:
    what replaying it there would do, or why it cannot (asked only where the
    person may act)."""
    newest = run.flow.published_version
    if (not request.user.has_perm("runs.change_run") or run.is_test or not newest
            or newest == run.version_number or run.status not in decider.RUN_LIVE):  # fmt: skip
        return {}
    return {
        step.node_id: migration.plan(run, step.node_id)
        for step in steps
        if step.status == decider.DEAD_LETTERED
    }


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


def _moved_words(moved: migration.Moved) -> str:
    return (f"Run {moved.run_id} moved from version {moved.from_version} to version "
            f"{moved.to_version} (nodes checked: {', '.join(moved.checked)}); step "
            f"{moved.node} replayed there with its idempotency key.")  # fmt: skip


def _replay_on_newest(request, run: Run, node: str):
    """The fix just shipped: move the run to the newest version, in place,
    and replay its dead letter there; refused with the nodes named."""
    if request.POST.get("edited_input", "").strip():
        messages.error(request, "Not replayed: an edited input replays on the run's own "
                                "version; replay on the newest version unedited.")  # fmt: skip
        return back_to(request, run)
    try:
        moved = driver.replay_on_newest(run.pk, node, actor=actor_of(request))
    except (decider.IllegalTransition, decider.StaleCommand) as exc:
        messages.error(request, f"Not replayed on the newest version: {exc}")
    else:
        messages.success(request, _moved_words(moved))
    return back_to(request, run)


@require_POST
@role_required("runs.change_run")
def step_replay(request, run_id, node):
    run = get_object_or_404(Run.objects.select_related("flow__team"), pk=run_id)
    if request.POST.get("version") == "newest":
        return _replay_on_newest(request, run, node)
    form = ReplayForm(request.POST)
    if not form.is_valid():
        for error in form.errors.get("edited_input", []):
            messages.error(request, f"Edited input: {error}")
        return back_to(request, run)
    edited = bool(request.POST.get("edited_input", "").strip())
    if edited:
        try:
            replay_edits.check_edit(request.user, run, node, form.cleaned_data["edited_input"])
        except replay_edits.EditForbidden as exc:
            raise PermissionDenied(str(exc)) from None
        except replay_edits.EditRefused as exc:
            messages.error(request, f"Not replayed: {exc}")
            return back_to(request, run)
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
    return back_to(request, run)


@require_POST
@role_required("runs.change_run")
def step_discard(request, run_id, node):
    run = get_object_or_404(Run, pk=run_id)
    form = DiscardForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the dead letter is discarded.")
        return back_to(request, run)
    try:
        driver.discard_dead_letter(
            run.pk, node, actor=actor_of(request), reason=form.cleaned_data["reason"]
        )
    except decider.IllegalTransition as exc:
        messages.error(request, f"Cannot discard: {exc}.")
    else:
        messages.success(request, f"Step {node} discarded; the run has failed.")
    return back_to(request, run)


@require_POST
@role_required("runs.change_run")
def run_replay(request, run_id):
    """A new run from the recorded trigger input; new idempotency keys."""
    run = get_object_or_404(Run, pk=run_id)
    newest = request.POST.get("version") == "newest"
    try:
        new = driver.replay_run(run.pk, actor=actor_of(request), newest_version=newest)
    except driver.StartRefused as exc:
        messages.error(request, str(exc))
        return redirect("runs:detail", run_id=run.pk)
    messages.success(
        request,
        f"Run {new.pk} replays run {run.pk} on "
        f"{'the same draft snapshot' if new.is_test else f'version {new.version_number}'} with new "
        "idempotency keys: its side effects are new requests to the remote systems.",
    )
    return redirect("runs:detail", run_id=new.pk)


@require_POST
@role_required("runs.change_run")
def run_resume(request, run_id):
    """Continue a failed run from its failed step; succeeded steps are kept."""
    run = get_object_or_404(Run, pk=run_id)
    try:
        new = driver.resume_run(run.pk, actor=actor_of(request))
    except driver.StartRefused as exc:
        messages.error(request, str(exc))
        return redirect("runs:detail", run_id=run.pk)
    messages.success(request, f"Run {new.pk} resumes run {run.pk} from its failed step.")
    return redirect("runs:detail", run_id=new.pk)


@require_POST
@role_required("runs.change_run")
def dead_letters_replay(request):
    """Replay many dead letters at once, after a fix; each keeps its key.
    ``version=newest`` moves each run that can move to its flow's newest
    version first, and names the ones that cannot."""
    chosen = request.POST.getlist("step")
    if request.POST.get("version") == "newest":
        return _replay_many_on_newest(request, chosen)
    replayed, refused = 0, []
    for value in chosen[:500]:
        run_id, _, node = value.partition(":")
        if not run_id.isdigit() or not node:
            refused.append(f"{value!r} is not a step")
            continue
        try:
            driver.replay_dead_letter(int(run_id), node, actor=actor_of(request))
            replayed += 1
        except (decider.IllegalTransition, Run.DoesNotExist) as exc:
            refused.append(f"run {run_id} step {node}: {exc}")
    if replayed:
        messages.success(request, f"Replayed {replayed} dead letter{'s' if replayed > 1 else ''}.")
    for reason in refused:
        messages.error(request, f"Not replayed: {reason}.")
    if not chosen:
        messages.error(request, "Select the dead letters to replay.")
    return redirect("runs:dead_letters")


def _replay_many_on_newest(request, chosen: list[str]):
    pairs, bad = [], []
    for value in chosen[:500]:
        run_id, _, node = value.partition(":")
        if run_id.isdigit() and node:
            pairs.append((int(run_id), node))
        else:
            bad.append(value)
    outcome = migration.replay_many_on_newest(pairs, actor=actor_of(request))
    count = len(outcome.moved)
    if count:
        runs = len({moved.run_id for moved in outcome.moved})
        versions = ", ".join(
            f"run {m.run_id}: version {m.from_version} → {m.to_version}" for m in outcome.moved[:20]
        )
        messages.success(
            request,
            f"Moved {runs} run{'s' if runs != 1 else ''} to the newest version and replayed "
            f"{count} dead letter{'s' if count != 1 else ''} there ({versions}).",
        )
    for _, node, reason in outcome.refused:
        messages.error(request, f"Not moved: step {node}: {reason}")
    for value in bad:
        messages.error(request, f"Not replayed: {value!r} is not a step.")
    if not chosen:
        messages.error(request, "Select the dead letters to replay.")
    return redirect("runs:dead_letters")
