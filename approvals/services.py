"""Writes on approval tasks. Each is an event on the run's stream, appended
while holding the stream's head (the run's one lock), after re-reading the
task under that lock: two reviewers, a sweep and a cancelled run all queue
there, so every check below sees the latest decision. The API calls these
same functions; views only parse, call and show."""

import datetime as dt
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction

from approvals import notify
from approvals.models import ApprovalTask, TaskStatus
from approvals.requesting import WAIT_REASON
from runs import decider, driver
from runs.ground import clock, projectors
from runs.ground.eventstore import append
from runs.ground.models import Stream
from runs.models import Run

DECISIONS = ("approved", "rejected")
# How a person acted: recorded beside the actor, never in it, so the actor of
# every event is the person alone and each check compares people.
VIA = ("page", "email-link", "api")
MAX_TEXT = 2000


class ApprovalRefused(Exception):
    """The action is not allowed now; the message says why, for a person."""


class AlreadyDecided(ApprovalRefused):
    def __init__(self, task: ApprovalTask):
        self.task = task
        when = f"{task.decided_at:%Y-%m-%d %H:%M:%S} UTC" if task.decided_at else ""
        super().__init__(f"{task.decided_by_name} already {task.decision} this task {when}.")


class FormInvalid(ApprovalRefused):
    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("Check the form: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))


def actor(user) -> str:
    return f"user:{user.get_username()}"


def person_of(actor_text: str) -> str | None:
    """The username in an actor ("user:alice"); None for the engine, a
    trigger or a run."""
    kind, _, rest = actor_text.partition(":")
    return rest.split()[0] if kind == "user" and rest.strip() else None


def lock_task(task_id: int) -> ApprovalTask:
    """The task, re-read after locking its run's stream head. Inside
    ``transaction.atomic``: the lock lasts until the caller commits."""
    run_id = ApprovalTask.objects.values_list("run_id", flat=True).get(pk=task_id)
    Stream.objects.select_for_update().filter(name=f"run:{run_id}").first()
    return ApprovalTask.objects.select_related("run", "assignee_group", "claimed_by").get(
        pk=task_id
    )


def record_fact(task: ApprovalTask, kind: str, payload: dict, *, by: str) -> None:
    """Append an approval fact to the run's stream and project it, in the
    caller's transaction (which holds the lock from ``lock_task``)."""
    event = append(
        task.run.stream,
        kind,
        {"node": task.node_id, "attempt": task.attempt, **payload},
        actor=by,
    )
    projectors.project([event])


# --- who may do what --------------------------------------------------------


def refusal_if_closed(task: ApprovalTask) -> str | None:
    if task.status == TaskStatus.DECIDED:
        return str(AlreadyDecided(task))
    if task.status == TaskStatus.CANCELLED:
        return f"Run {task.run_id} is {task.run.status}: this task no longer takes a decision."
    if task.status == TaskStatus.ABANDONED:
        return "Nobody decided in time: by the flow's policy this task went to the dead letters."
    return None


def lineage_of(task: ApprovalTask) -> int:
    return task.run.lineage_id or task.run_id


def sod_conflict(task: ApprovalTask, user) -> str | None:
    """Separation of duties over the run's whole lineage (the runs resumed,
    replayed or started as sub-flows from one another): who started any of
    them, or approved an earlier step of any, may not decide; with
    ``distinct_deciders`` nobody decides two tasks of one lineage."""
    if not (task.separation_of_duties or task.distinct_deciders):
        return None
    lineage = lineage_of(task)
    decided = ApprovalTask.objects.filter(run__lineage_id=lineage, decided_by=user).exclude(
        pk=task.pk
    )
    if task.separation_of_duties:
        starters = Run.objects.filter(lineage_id=lineage).values_list("started_by", flat=True)
        if user.get_username() in {person_of(s) for s in starters}:
            return (
                "Separation of duties: you started this run (or a run it continues), "
                "so someone else must decide."
            )
        if decided.filter(decision="approved").exists():
            return "Separation of duties: you approved an earlier step of this run or its lineage."
    if task.distinct_deciders:
        earlier = decided.order_by("decided_at").first()
        if earlier is not None:
            return (
                "One person may not decide two tasks of the same run lineage: you already "
                f"decided “{earlier.title}” (run {earlier.run_id})."
            )
    return None


def is_assignee(task: ApprovalTask, user) -> bool:
    if task.assignee_user_id:
        return task.assignee_user_id == user.pk
    return bool(task.assignee_group_id) and user.groups.filter(pk=task.assignee_group_id).exists()


def may_read(task: ApprovalTask, user) -> bool:
    """Its queue, whoever holds or decided it, and admins."""
    if not user.has_perm("approvals.view_approvaltask"):
        return False
    return (
        user.has_perm("approvals.manage_queues")
        or is_assignee(task, user)
        or user.pk in (task.decided_by_id, task.claimed_by_id)
    )


def refusal_to_decide(task: ApprovalTask, user) -> str | None:
    """Why ``user`` may not claim or decide ``task`` now, or None."""
    closed = refusal_if_closed(task)
    if closed:
        return closed
    if not user.has_perm("approvals.decide_task"):
        return "Your role does not decide approval tasks."
    if not is_assignee(task, user):
        if task.escalation_level and task.escalated_at:
            group = task.assignee_group.name if task.assignee_group else "another group"
            return (
                f"This task was escalated to {group} at "
                f"{task.escalated_at:%Y-%m-%d %H:%M} UTC; it is no longer yours to decide."
            )
        return "This task is assigned to someone else."
    conflict = sod_conflict(task, user)
    if conflict:
        return conflict
    if task.claimed_by_id and task.claimed_by_id != user.pk:
        return f"{task.claimed_by.get_username()} has claimed this task."
    return None


# --- services -------------------------------------------------------------------


def _check_via(via: str) -> None:
    if via not in VIA:
        raise ApprovalRefused(f"Unknown way to act: {via}.")


def task_claim(*, task_id: int, user, via: str = "page") -> ApprovalTask:
    _check_via(via)
    with transaction.atomic():
        task = lock_task(task_id)
        refusal = refusal_to_decide(task, user)
        if refusal:
            raise ApprovalRefused(refusal)
        if task.claimed_by_id != user.pk:
            record_fact(task, "approval.claimed", {"user": user.get_username(), "via": via},
                        by=actor(user))  # fmt: skip
    return task


def task_release(*, task_id: int, user) -> ApprovalTask:
    with transaction.atomic():
        task = lock_task(task_id)
        closed = refusal_if_closed(task)
        if closed:
            raise ApprovalRefused(closed)
        if not task.claimed_by_id:
            raise ApprovalRefused("Nobody has claimed this task.")
        if task.claimed_by_id != user.pk and not user.has_perm("approvals.manage_queues"):
            raise ApprovalRefused(f"{task.claimed_by.get_username()} holds this task.")
        record_fact(task, "approval.released", {"user": user.get_username()}, by=actor(user))
    return task


def task_reassign(*, task_id: int, by, user=None, group: Group | None = None) -> ApprovalTask:
    if not by.has_perm("approvals.manage_queues"):
        raise ApprovalRefused("Only admins reassign tasks.")
    if (user is None) == (group is None):
        raise ApprovalRefused("Choose either a person or a group.")
    with transaction.atomic():
        task = lock_task(task_id)
        closed = refusal_if_closed(task)
        if closed:
            raise ApprovalRefused(closed)
        conflict = sod_conflict(task, user) if user else None
        if conflict:
            raise ApprovalRefused(f"{user.get_username()} may not decide this task. {conflict}")
        payload = {
            "user": user.get_username() if user else None,
            "group": group.name if group else None,
            "by": by.get_username(),
        }
        record_fact(task, "approval.reassigned", payload, by=actor(by))
        notify.send_on_commit(task.pk, "request")
    return task


def task_comment(*, task_id: int, user, body: str) -> ApprovalTask:
    body = body.strip()
    if not body:
        raise ApprovalRefused("Write a comment first.")
    if len(body) > MAX_TEXT:
        raise ApprovalRefused(f"A comment has at most {MAX_TEXT} characters.")
    with transaction.atomic():
        task = lock_task(task_id)
        if not may_read(task, user):
            raise ApprovalRefused("This task is in another queue.")
        record_fact(task, "approval.commented", {"user": user.get_username(), "body": body},
                by=actor(user))  # fmt: skip
    return task


def clean_fields(form: list[dict], submitted: dict[str, Any], *, decision: str) -> dict:
    """The reviewer's typed fields, parsed; FormInvalid names each problem.
    Required fields are what an approval needs to go ahead; a rejection may
    leave them empty."""
    values, errors = {}, {}
    for spec in form:
        name, raw = spec["name"], str(submitted.get(spec["name"], "") or "").strip()
        if not raw:
            if spec.get("required") and decision == "approved":
                errors[name] = "this field is required"
            continue
        if spec["type"] == "number":
            try:
                number = float(raw)
            except ValueError:
                errors[name] = f"“{raw}” is not a number"
                continue
            values[name] = int(number) if number.is_integer() else number
        elif spec["type"] == "date":
            try:
                values[name] = dt.date.fromisoformat(raw).isoformat()
            except ValueError:
                errors[name] = f"“{raw}” is not a date (YYYY-MM-DD)"
        elif spec["type"] == "choice":
            if raw not in spec["choices"]:
                errors[name] = f"choose one of {', '.join(spec['choices'])}"
            else:
                values[name] = raw
        elif len(raw) > MAX_TEXT:
            errors[name] = f"at most {MAX_TEXT} characters"
        else:
            values[name] = raw
    if errors:
        raise FormInvalid(errors)
    return values


def task_decide(
    *, task_id: int, user, decision: str, comment: str = "", fields: dict | None = None,
    via: str = "page",
) -> ApprovalTask:  # fmt: skip
    """Decide once. Under the run's lock, the first decision ends the step's
    wait and resumes the run on the decision's port; every later one finds
    the task decided and is told by whom."""
    if decision not in DECISIONS:
        raise ApprovalRefused("Choose approve or reject.")
    _check_via(via)
    comment = comment.strip()
    if len(comment) > MAX_TEXT:
        raise FormInvalid({"comment": f"at most {MAX_TEXT} characters"})
    with transaction.atomic():
        task = lock_task(task_id)
        if task.status == TaskStatus.DECIDED:
            raise AlreadyDecided(task)
        refusal = refusal_to_decide(task, user)
        if refusal:
            raise ApprovalRefused(refusal)
        values = clean_fields(task.form, fields or {}, decision=decision)
        try:
            signal_decision(task, decision=decision, comment=comment, fields=values,
                             by=user.get_username(), via=via)  # fmt: skip
        except (decider.StaleCommand, decider.IllegalTransition) as exc:
            # The projection said open but the run disagrees: the run is the
            # truth, and nothing was appended.
            raise ApprovalRefused(f"The run no longer waits for this decision ({exc}).") from exc
        task.refresh_from_db()
    return task


def signal_decision(task: ApprovalTask, *, decision: str, comment: str, fields: dict, by: str,
                     breach: bool = False, via: str = "") -> None:  # fmt: skip
    now = clock.now()
    output = {
        "decision": decision,
        "comment": comment,
        "fields": fields,
        "decided_by": by,
        "decided_at": now.isoformat(),
    }
    decided = {"decision": decision, "comment": comment, "fields": fields, "user": by}
    if breach:
        decided["breach"] = True
    if via:
        decided["via"] = via
    driver.signal_step(
        task.run_id, task.node_id, task.attempt, reason=WAIT_REASON, output=output,
        port=decision, actor=by if by.startswith("system:") else f"user:{by}",
        extra_events=[("approval.decided", {"node": task.node_id, "attempt": task.attempt,
                                            **decided})],
    )  # fmt: skip
