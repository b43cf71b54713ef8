"""Approval: a person decides. The step waits, with no timer, for the
decision (``approvals.services.task_decide`` signals it); it leaves by
"approved" or "rejected". Title, description and the data it shows are
expressions over the run's data, rendered by the engine like any config."""

from typing import Literal

from pydantic import Field, model_validator

from approvals import requesting
from approvals.requesting import WAIT_REASON
from connectors.base import Connector, ConnectorError, Context, Result, StrictConfig, register


class FormField(StrictConfig):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    label: str = ""
    type: Literal["text", "number", "choice", "date"] = "text"
    required: bool = False
    choices: list[str] = []

    @model_validator(mode="after")
    def choices_for_choice(self):
        if self.type == "choice" and not self.choices:
            raise ValueError(f"field {self.name}: a choice needs choices")
        return self


Policy = Literal["keep_waiting", "auto_reject", "dead_letter"]


class Escalation(StrictConfig):
    """After the SLA: reassign to ``group`` and notify; after ``hours`` more,
    ``then``, or by default the flow's ``settings.approval_breach_policy``."""

    group: str = Field(min_length=1)
    hours: float = Field(gt=0, le=24 * 366)
    then: Policy | None = None


class ApprovalConfig(StrictConfig):
    title: str = Field(min_length=1, max_length=300)
    description: str = ""
    assignee_user: str | None = None
    assignee_group: str | None = None
    fields: list[FormField] = []
    shows: dict = {}
    sla_hours: float | None = Field(default=None, gt=0, le=24 * 366)
    sla_clock: Literal["wall", "business"] = "wall"
    escalation: Escalation | None = None
    remind_before_hours: list[float] = []
    # Who started any run of the lineage (resumes, replays, sub-flows) may
    # not decide, nor who approved an earlier step of it.
    separation_of_duties: bool = False
    # One person may not decide two tasks of the same lineage.
    distinct_deciders: bool = False

    @model_validator(mode="after")
    def one_assignee(self):
        if bool(self.assignee_user) == bool(self.assignee_group):
            raise ValueError("give either assignee_user or assignee_group")
        if self.escalation and self.sla_hours is None:
            raise ValueError("an escalation needs sla_hours")
        if self.remind_before_hours and self.sla_hours is None:
            raise ValueError("reminders need sla_hours")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("form field names must be unique")
        return self


@register
class Approval(Connector):
    key = "approval"
    label = "Approval"
    category = "People"
    icon = "user-check"
    description = (
        "Pauses the run until a person approves or rejects, with an SLA, reminders, "
        "escalation to a supervisor group, separation of duties and distinct deciders."
    )
    Config = ApprovalConfig
    example_config = {
        "title": "Refund {{ trigger.amount }} for order {{ trigger.order_id }}?",
        "assignee_group": "Finance leads",
        "fields": [{"name": "reason", "label": "Reason", "type": "text", "required": True}],
        "sla_hours": 8,
        "sla_clock": "business",
        "escalation": {"group": "Finance leads", "hours": 8, "then": "auto_reject"},
        "remind_before_hours": [1],
        "separation_of_duties": True,
    }
    ports = ("approved", "rejected")
    # Requesting is a fact recorded with the step's wait; the email goes out
    # after commit. Nothing here reaches outside, so it runs inline.
    inline = True

    def execute(self, ctx: Context) -> Result:
        try:
            request = requesting.build(ctx.config, now=ctx.now)
        except requesting.RequestError as exc:
            raise ConnectorError(str(exc), retryable=False) from None
        payload = {"node": ctx.node_id, "attempt": ctx.attempt, **request}
        return Result(
            output={"requested": True, "due_at": request["due_at"]},
            wait_for=WAIT_REASON,
            events=[("approval.requested", payload)],
        )
