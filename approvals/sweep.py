"""The SLA sweep: reminders before the due time, escalation after it, and
the flow's policy after a second breach. Beat ticks it with the clock's
``now``; tests pass their own. Each task is re-read under its run's lock and
acted on only if it is still due (a compare-and-set), so two sweeps, or a
sweep racing a reviewer, act once."""

import datetime as dt
import logging

from django.db import transaction

from approvals import notify, requesting, services, sla
from approvals.models import ApprovalTask, TaskStatus
from approvals.requesting import WAIT_REASON
from runs import driver

log = logging.getLogger(__name__)
BATCH = 200
SLA_ACTOR = "system:sla"


def sweep(now: dt.datetime) -> dict[str, int]:
    open_tasks = ApprovalTask.objects.filter(status=TaskStatus.OPEN)
    reminded = sum(
        remind(task_id, now)
        for task_id in open_tasks.filter(remind_at__lte=now)
        .order_by("remind_at")
        .values_list("pk", flat=True)[:BATCH]
    )
    breached = sum(
        breach(task_id, now)
        for task_id in open_tasks.filter(due_at__lte=now)
        .order_by("due_at")
        .values_list("pk", flat=True)[:BATCH]
    )
    if reminded or breached:
        log.info("approval sweep: %s reminded, %s past their SLA", reminded, breached)
    return {"reminded": reminded, "breached": breached}


def remind(task_id: int, now: dt.datetime) -> bool:
    with transaction.atomic():
        task = services.lock_task(task_id)
        if task.status != TaskStatus.OPEN or task.remind_at is None or task.remind_at > now:
            return False
        following = requesting.first_reminder(task.due_at, task.reminders, now)
        services.record_fact(
            task, "approval.reminded",
            {"next_remind_at": following.isoformat() if following else None}, by=SLA_ACTOR,
        )  # fmt: skip
        notify.send_on_commit(task.pk, "reminder")
    return True


def breach(task_id: int, now: dt.datetime) -> bool:
    with transaction.atomic():
        task = services.lock_task(task_id)
        if task.status != TaskStatus.OPEN or task.due_at is None or task.due_at > now:
            return False
        escalation = task.escalation
        if escalation and task.escalation_level == 0:
            _escalate(task, escalation, now)
        else:
            _apply_policy(task, breach_policy(task))
    return True


def breach_policy(task: ApprovalTask) -> str:
    """The node's own choice, else the flow's (on the run's pinned version)."""
    chosen = (task.escalation or {}).get("then")
    if chosen:
        return chosen
    settings = driver.graph_for(task.run).settings
    return settings.get("approval_breach_policy", "keep_waiting")


def _escalate(task: ApprovalTask, escalation: dict, now: dt.datetime) -> None:
    # Counted from the missed due time, not from when the sweep noticed, so a
    # late sweep does not lengthen the second SLA.
    clock_kind = task.sla.get("clock", "wall")
    try:
        due = sla.due_after(
            task.due_at, hours=escalation["hours"], clock=clock_kind, group=escalation["group"]
        )
    except sla.CalendarError as exc:
        log.warning("approval %s: %s; counting the second SLA in wall-clock hours", task.pk, exc)
        due = sla.add_wall_hours(task.due_at, escalation["hours"])
    payload = {
        "level": 1,
        "group": escalation["group"],
        "from_group": task.assignee_group.name if task.assignee_group else None,
        "from_user": task.assignee_user.get_username() if task.assignee_user else None,
        "due_at": due.isoformat(),
    }
    # The supervisors are reminded before their own due time, like the first.
    following = requesting.first_reminder(due, task.reminders, now)
    payload["remind_at"] = following.isoformat() if following else None
    services.record_fact(task, "approval.escalated", payload, by=SLA_ACTOR)
    notify.send_on_commit(task.pk, "escalation")


def _apply_policy(task: ApprovalTask, policy: str) -> None:
    """After the last SLA: keep waiting (counted), auto-reject, or dead-letter."""
    level = task.escalation_level + 1
    if policy == "auto_reject":
        services.signal_decision(
            task, decision="rejected", by=SLA_ACTOR, fields={}, breach=True,
            comment="Nobody decided in time; rejected by the flow's policy.",
        )  # fmt: skip
    elif policy == "dead_letter":
        driver.give_up_wait(
            task.run_id, task.node_id, task.attempt, reason=WAIT_REASON, actor=SLA_ACTOR,
            error="Nobody decided in time; by the flow's policy the approval is a dead letter. "
            "Replay it to ask again, or discard it to fail the run.",
            extra_events=[("approval.abandoned",
                           {"node": task.node_id, "attempt": task.attempt, "level": level})],
        )  # fmt: skip
    else:
        services.record_fact(
            task, "approval.sla_breached", {"level": level, "policy": "keep_waiting"}, by=SLA_ACTOR
        )
