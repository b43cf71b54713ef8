"""Approval flows and reviewers for approval tests."""

from django.contrib.auth.models import Group, User

from approvals.models import ApprovalTask
from config.roles import REVIEWER
from tests.conftest import PASSWORD
from tests.engine_helpers import publish, transform

SUPERVISORS = "Finance leads"


def reviewer(username: str, *groups: str) -> User:
    user = User.objects.create_user(
        username=username, password=PASSWORD, email=f"{username}@example.com"
    )
    for name in (REVIEWER, *groups):
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def approval_node(node_id: str = "review", **config) -> dict:
    base = {
        "title": "Refund {{ trigger.amount }} EUR for {{ trigger.order_id }}",
        "description": "Customer says: {{ trigger.reason }}",
        "assignee_group": REVIEWER,
        "shows": {"amount": "{{ trigger.amount }}"},
        "fields": [
            {"name": "refund_kind", "type": "choice", "choices": ["card", "credit"],
             "required": True},
            {"name": "amount_ok", "type": "number"},
        ],
    }  # fmt: skip
    base.update(config)
    return {"id": node_id, "type": "approval", "config": base}


def approval_flow(actor, slug: str = "refunds", settings: dict | None = None, **config):
    """trigger -> review -> done (approved) | declined (rejected)."""
    graph: dict = {
        "nodes": [
            {"id": "start", "type": "trigger.manual"},
            approval_node(**config),
            transform("done", kind="{{ steps.review.output.fields.refund_kind }}"),
            transform("declined", why="{{ steps.review.output.comment }}"),
        ],
        "edges": [
            {"from": "start", "to": "review"},
            {"from": "review", "from_port": "approved", "to": "done"},
            {"from": "review", "from_port": "rejected", "to": "declined"},
        ],
    }
    if settings:
        graph["settings"] = settings
    return publish(actor, graph, slug=slug)


def two_step_flow(actor, slug: str = "two-approvals", **config):
    """trigger -> first -> second -> done; both ask for separation of duties."""
    config = {"separation_of_duties": True, "fields": [], **config}
    graph = {
        "nodes": [
            {"id": "start", "type": "trigger.manual"},
            approval_node("first", **config),
            approval_node("second", **config),
            transform("done", ok=True),
        ],
        "edges": [
            {"from": "start", "to": "first"},
            {"from": "first", "from_port": "approved", "to": "second"},
            {"from": "second", "from_port": "approved", "to": "done"},
        ],
    }
    return publish(actor, graph, slug=slug)


INPUT = {"order_id": "A-7", "amount": 640, "reason": "arrived broken"}


def task_of(run, node: str = "review", attempt: int = 1) -> ApprovalTask:
    return ApprovalTask.objects.get(run=run, node_id=node, attempt=attempt)
