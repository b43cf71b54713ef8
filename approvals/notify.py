"""Emails to the assignee (or the assigned group's members) on request,
reminder and escalation. Sent after commit, outside any transaction: a slow
mail server must not hold a run's lock, and a rolled-back change must not
mail anyone."""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string

from approvals import links
from approvals.models import ApprovalTask

log = logging.getLogger(__name__)

SUBJECTS = {
    "request": "Approval requested: {title}",
    "reminder": "Reminder: approval due {due}: {title}",
    "escalation": "Escalated to {group}: {title}",
}


def recipients(task: ApprovalTask) -> list:
    if task.assignee_user_id:
        users = [task.assignee_user]
    elif task.assignee_group_id:
        users = list(get_user_model().objects.filter(groups=task.assignee_group_id))
    else:
        users = []
    return [u for u in users if u.is_active and u.email]


def send_on_commit(task_id: int, kind: str) -> None:
    transaction.on_commit(lambda: send(task_id, kind))


def send(task_id: int, kind: str) -> int:
    task = ApprovalTask.objects.select_related("assignee_user", "assignee_group").get(pk=task_id)
    sent = 0
    for user in recipients(task):
        token = links.make_token(task_id=task.pk, user_id=user.pk)
        context = {"task": task, "user": user, "kind": kind, "link": links.absolute_url(token)}
        subject = SUBJECTS[kind].format(
            title=task.title,
            due=f"{task.due_at:%Y-%m-%d %H:%M} UTC" if task.due_at else "",
            group=task.assignee_group.name if task.assignee_group else "",
        )
        try:
            send_mail(
                f"[Ledgerflow] {subject}",
                render_to_string("approvals/email.txt", context),
                settings.DEFAULT_FROM_EMAIL,
                [user.email],
            )
            sent += 1
        except Exception as exc:  # one bad address must not stop the others
            log.warning("approval %s: %s email to %s failed: %s", task.pk, kind, user.email, exc)
    if not sent:
        log.info("approval %s: no one with an email address to notify (%s)", task.pk, kind)
    return sent
