"""Reviewer pages: the inbox, a task with its run's context and the form,
the admins' queues, the badge, and the confirmation page behind an email's
decide link. Views parse, call one service, and show its answer."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from approvals import links, selectors, services
from approvals.calendars import CalendarRefused, calendar_save
from approvals.forms import BusinessCalendarForm, hours_to_text
from approvals.models import ApprovalTask, BusinessCalendar
from config.roles import role_required
from flows.models import Flow
from runs.ground import clock

FILTERS = ("decision", "flow", "q", "decided_by")


@role_required("approvals.view_approvaltask")
def inbox(request):
    tab = request.GET.get("tab", "mine")
    if tab not in selectors.TABS:
        tab = "mine"
    filters = {key: request.GET.get(key, "").strip() for key in FILTERS}
    context = {
        "tab": tab,
        "filters": filters,
        "tasks": selectors.inbox(request.user, tab=tab, now=clock.now(), filters=filters)[:200],
        "now": clock.now(),
        "flows": Flow.objects.filter(approval_tasks__isnull=False).distinct().order_by("name"),
        "counts": {
            name: selectors.inbox(request.user, tab=name, now=clock.now()).count()
            for name in ("mine", "groups")
        },
    }
    if request.htmx and request.htmx.target == "inbox-list":
        return render(request, "approvals/_inbox_list.html", context)
    return render(request, "approvals/inbox.html", context)


@role_required("approvals.view_approvaltask")
def badge(request):
    return render(request, "approvals/_badge.html")


@role_required("approvals.manage_queues")
def queues(request):
    context = {"queues": selectors.queues(clock.now()), "metrics": selectors.metrics()}
    return render(request, "approvals/queues.html", context)


def _readable_task(request, task_id: int) -> ApprovalTask:
    task = get_object_or_404(
        ApprovalTask.objects.select_related(
            "flow", "flow__owner", "run", "assignee_user", "assignee_group", "claimed_by"
        ),
        pk=task_id,
    )
    if not services.may_read(task, request.user):
        raise PermissionDenied("This task is in another queue.")
    return task


def _task_context(request, task: ApprovalTask, **extra) -> dict:
    return {
        "task": task,
        "now": clock.now(),
        "refusal": services.refusal_to_decide(task, request.user),
        "history": selectors.run_history(task),
        # The whole lineage: separation of duties counts these decisions too.
        "earlier": ApprovalTask.objects.filter(run__lineage_id=services.lineage_of(task))
        .exclude(pk=task.pk)
        .order_by("requested_at"),
        "groups": Group.objects.order_by("name"),
        "users": get_user_model().objects.filter(is_active=True).order_by("username"),
        "submitted": {},
        "errors": {},
        **extra,
    }


@role_required("approvals.view_approvaltask")
def task_detail(request, task_id):
    task = _readable_task(request, task_id)
    return render(request, "approvals/task.html", _task_context(request, task))


def _act(request, task_id, action, success: str):
    _readable_task(request, task_id)
    try:
        action()
    except services.ApprovalRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    return redirect("approvals:task", task_id=task_id)


@require_POST
@role_required("approvals.decide_task")
def task_claim(request, task_id):
    return _act(request, task_id,
                lambda: services.task_claim(task_id=task_id, user=request.user),
                "You claimed this task; others see it is yours.")  # fmt: skip


@require_POST
@role_required("approvals.decide_task")
def task_release(request, task_id):
    return _act(request, task_id,
                lambda: services.task_release(task_id=task_id, user=request.user),
                "Released: the task is back in its queue.")  # fmt: skip


@require_POST
@role_required("approvals.view_approvaltask")
def task_comment(request, task_id):
    body = request.POST.get("body", "")
    return _act(request, task_id,
                lambda: services.task_comment(task_id=task_id, user=request.user, body=body),
                "Comment added.")  # fmt: skip


@require_POST
@role_required("approvals.manage_queues")
def task_reassign(request, task_id):
    target = request.POST.get("assignee", "")
    kind, _, name = target.partition(":")
    user = get_user_model().objects.filter(username=name, is_active=True).first()
    group = Group.objects.filter(name=name).first()

    def reassign():
        if kind == "user" and user:
            services.task_reassign(task_id=task_id, by=request.user, user=user)
        elif kind == "group" and group:
            services.task_reassign(task_id=task_id, by=request.user, group=group)
        else:
            raise services.ApprovalRefused("Choose a person or a group to reassign to.")

    return _act(request, task_id, reassign, f"Reassigned to {name}.")


@require_POST
@role_required("approvals.decide_task")
def task_decide(request, task_id):
    task = _readable_task(request, task_id)
    decision = request.POST.get("decision", "")
    fields = {spec["name"]: request.POST.get(f"field_{spec['name']}", "") for spec in task.form}
    comment = request.POST.get("comment", "")
    via = "email-link" if request.POST.get("via") == "email-link" else "page"
    try:
        services.task_decide(task_id=task.pk, user=request.user, decision=decision,
                             comment=comment, fields=fields, via=via)  # fmt: skip
    except services.FormInvalid as exc:
        # Keep what the reviewer typed: bad input loses nothing.
        task.refresh_from_db()
        context = _task_context(request, task, submitted={**fields, "comment": comment},
                                errors=exc.errors)  # fmt: skip
        return render(request, "approvals/task.html", context, status=400)
    except services.ApprovalRefused as exc:
        messages.error(request, str(exc))
        return redirect("approvals:task", task_id=task.pk)
    messages.success(request, f"You {decision} “{task.title}”; the run goes on.")
    return redirect("approvals:inbox")


@role_required("approvals.decide_task")
def decide_link(request, token):
    """The page an email's link opens: it shows the task and the form, and
    decides nothing (mail scanners fetch links)."""
    try:
        task_id, user_id = links.read_token(token)
    except links.BadLink as exc:
        return render(request, "approvals/link_refused.html", {"reason": str(exc)}, status=400)
    if user_id != request.user.pk:
        messages.error(
            request,
            "That link was sent to someone else: log in as its recipient, or use your inbox.",
        )
        return redirect("approvals:inbox")
    task = _readable_task(request, task_id)
    return render(request, "approvals/task.html", _task_context(request, task, from_link=True))


@role_required("approvals.manage_queues")
def calendars(request):
    """Business hours per group, for SLAs counted in business hours. A change
    applies to tasks requested or escalated afterwards; recorded due times
    stay as they were."""
    form = BusinessCalendarForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            calendar = calendar_save(actor=request.user, **form.cleaned_data)
        except CalendarRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Business hours of {calendar.group.name} saved.")
            return redirect("approvals:calendars")
    rows = BusinessCalendar.objects.select_related("group").order_by("group__name")
    context = {"form": form, "calendars": [(c, hours_to_text(c.opening_hours)) for c in rows]}
    return render(request, "approvals/calendars.html", context, status=400 if form.errors else 200)
