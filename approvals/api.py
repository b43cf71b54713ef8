"""Approvals in the API, under /api/v1/approvals/: my tasks, and deciding
one, with the inbox's checks (the same services as the task page)."""

import datetime as dt
from typing import Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from pydantic import Field

from approvals import selectors, services
from approvals.models import ApprovalTask, TaskStatus
from config.roles import require
from config.tokens import idempotency
from config.tokens.errors import ApiError
from runs.ground import clock

router = Router(tags=["approvals"])


class TaskOut(Schema):
    id: int
    run_id: int
    flow: str
    node: str
    title: str
    description: str
    status: str
    assignee: str | None
    claimed_by: str | None
    requested_at: dt.datetime
    due_at: dt.datetime | None
    form: list[dict]
    decision: str
    decided_by: str
    decided_at: dt.datetime | None


def task_out(task: ApprovalTask) -> dict:
    if task.assignee_user_id:
        assignee = f"user:{task.assignee_user.get_username()}"
    elif task.assignee_group_id:
        assignee = f"group:{task.assignee_group.name}"
    else:
        assignee = None
    return {
        "id": task.pk,
        "run_id": task.run_id,
        "flow": task.flow.slug,
        "node": task.node_id,
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "assignee": assignee,
        "claimed_by": task.claimed_by.get_username() if task.claimed_by_id else None,
        "requested_at": task.requested_at,
        "due_at": task.due_at,
        "form": task.form,
        "decision": task.decision,
        "decided_by": task.decided_by_name,
        "decided_at": task.decided_at,
    }


@router.get("/approvals/tasks", response=list[TaskOut], url_name="approval_tasks")
def tasks_list(request: HttpRequest, tab: Literal["mine", "groups"] = "mine"):
    """Open tasks: assigned to me or claimed by me (``mine``), or waiting in
    my groups' queues (``groups``); overdue first, at most 200."""
    require(request.user, "approvals.view_approvaltask")
    return [task_out(t) for t in selectors.inbox(request.user, tab=tab, now=clock.now())[:200]]


class DecideIn(Schema):
    decision: Literal["approved", "rejected"]
    comment: str = Field("", max_length=services.MAX_TEXT)
    # The task's form fields by name, as the task page's form sends them.
    fields: dict[str, str | int | float | bool] = {}


@router.post(
    "/approvals/tasks/{int:task_id}/decide", response={200: TaskOut}, url_name="approval_decide"
)
def task_decide(request: HttpRequest, task_id: int, payload: DecideIn):
    """Decide a task once, as its page does: the run goes on on the
    decision's port. 403 when the task is not yours to decide (another
    queue, claimed by someone else, or separation of duties: you started
    the run); 409 when it is decided already; 422 with each field's problem.
    Send an ``Idempotency-Key`` header to make retries safe."""
    require(request.user, "approvals.decide_task")
    task = get_object_or_404(
        ApprovalTask.objects.select_related("flow", "assignee_user", "assignee_group"), pk=task_id
    )
    if not services.may_read(task, request.user):
        raise ApiError(403, "This task is in another queue.", code="refused")

    def act():
        if task.status == TaskStatus.OPEN:
            refusal = services.refusal_to_decide(task, request.user)
            if refusal:
                raise ApiError(403, refusal, code="refused")
        fields = {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                  for k, v in payload.fields.items()}  # fmt: skip
        try:
            decided = services.task_decide(
                task_id=task.pk, user=request.user, decision=payload.decision,
                comment=payload.comment, fields=fields, via="api",
            )  # fmt: skip
        except services.FormInvalid as exc:
            raise ApiError(422, "Check the form.", exc.errors) from None
        except services.ApprovalRefused as exc:
            raise ApiError(409, str(exc)) from None
        return 200, task_out(decided)

    status, body = idempotency.once(
        request,
        operation=f"POST /approvals/tasks/{task_id}/decide",
        request=payload.dict(),
        act=act,
    )
    return Status(status, body)
