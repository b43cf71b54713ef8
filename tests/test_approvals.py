"""Approval steps end to end through the services and the engine, against
real PostgreSQL, with time moved by the one clock."""

import datetime as dt
import io
import threading

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection

from approvals import selectors, services, sweep
from approvals.models import ApprovalTask, TaskStatus
from runs import driver
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run, Step
from tests.approval_helpers import (
    INPUT,
    SUPERVISORS,
    approval_flow,
    reviewer,
    task_of,
    two_step_flow,
)

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)  # a Monday


@pytest.fixture
def sam(db):
    return reviewer("sam", SUPERVISORS)


def start(flow, actor="user:olga", at=T0):
    with clock.frozen_at(at):
        return driver.start_run(flow=flow, input=INPUT, actor=actor)


def event_types(run) -> list[str]:
    return list(
        Event.objects.filter(stream=run.stream).order_by("seq").values_list("type", flat=True)
    )


def statuses(run) -> dict[str, str]:
    return dict(Step.objects.filter(run=run).values_list("node_id", "status"))


def decide(task, user, decision="approved", **kwargs):
    kwargs.setdefault("fields", {"refund_kind": "card"})
    return services.task_decide(task_id=task.pk, user=user, decision=decision, **kwargs)


def test_an_approval_step_waits_and_mails_the_group_a_link(
    olga, rita, ravi, django_capture_on_commit_callbacks
):
    flow = approval_flow(olga, sla_hours=4)
    with django_capture_on_commit_callbacks(execute=True):
        run = start(flow)
    assert Run.objects.get(pk=run.pk).status == "waiting"
    task = task_of(run)
    assert task.title == "Refund 640 EUR for A-7"
    assert task.description == "Customer says: arrived broken"
    assert task.shows == {"amount": 640}
    assert (task.status, task.assignee_group.name) == ("open", "Reviewer")
    assert task.due_at == T0 + dt.timedelta(hours=4)
    types = event_types(run)
    assert types.index("step.waiting") < types.index("approval.requested")
    assert sorted(m.to[0] for m in mail.outbox) == ["ravi@example.com", "rita@example.com"]
    assert "/approvals/link/" in mail.outbox[0].body


def test_approving_resumes_the_run_on_the_approved_branch(olga, rita):
    flow = approval_flow(olga)
    run = start(flow)
    with clock.frozen_at(T0 + dt.timedelta(minutes=5)):
        decide(task_of(run), rita, comment="Photos attached, fine.",
               fields={"refund_kind": "credit", "amount_ok": "640"})  # fmt: skip
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert statuses(run) == {"start": "succeeded", "review": "succeeded", "done": "succeeded",
                             "declined": "skipped"}  # fmt: skip
    output = Step.objects.get(run=run, node_id="review").output
    assert output == {
        "decision": "approved",
        "comment": "Photos attached, fine.",
        "fields": {"refund_kind": "credit", "amount_ok": 640},
        "decided_by": "rita",
        "decided_at": (T0 + dt.timedelta(minutes=5)).isoformat(),
    }
    assert Step.objects.get(run=run, node_id="done").output == {"kind": "credit"}
    task = task_of(run)
    assert (task.status, task.decision, task.decided_by, task.comment) == (
        "decided", "approved", rita, "Photos attached, fine.")  # fmt: skip


def test_rejecting_takes_the_rejected_branch(olga, rita):
    run = start(approval_flow(olga))
    decide(task_of(run), rita, "rejected", comment="No receipt.", fields={})
    assert statuses(run)["declined"] == "succeeded"
    assert statuses(run)["done"] == "skipped"
    assert Step.objects.get(run=run, node_id="declined").output == {"why": "No receipt."}


def test_a_second_decision_is_told_who_decided_and_how(olga, rita, ravi):
    run = start(approval_flow(olga))
    decide(task_of(run), rita, "rejected", fields={})
    with pytest.raises(services.AlreadyDecided, match="rita already rejected this task"):
        decide(task_of(run), ravi)
    assert event_types(run).count("approval.decided") == 1


def test_required_and_typed_fields_are_checked_and_nothing_is_decided(olga, rita):
    run = start(approval_flow(olga))
    with pytest.raises(services.FormInvalid) as refused:
        decide(task_of(run), rita, fields={"amount_ok": "lots"})
    assert refused.value.errors == {
        "refund_kind": "this field is required",
        "amount_ok": "“lots” is not a number",
    }
    assert task_of(run).status == "open"
    assert "approval.decided" not in event_types(run)


def test_a_decision_on_a_cancelled_run_is_refused(olga, rita):
    run = start(approval_flow(olga))
    driver.cancel_run(run.pk, actor="user:olga", reason="customer withdrew")
    assert task_of(run).status == TaskStatus.CANCELLED
    with pytest.raises(services.ApprovalRefused, match="cancelled: this task no longer takes"):
        decide(task_of(run), rita)


def test_a_claimed_task_is_decided_only_by_its_claimer_until_released(olga, rita, ravi):
    run = start(approval_flow(olga))
    task = services.task_claim(task_id=task_of(run).pk, user=rita)
    with pytest.raises(services.ApprovalRefused, match="rita has claimed this task"):
        decide(task, ravi)
    with pytest.raises(services.ApprovalRefused, match="rita holds this task"):
        services.task_release(task_id=task.pk, user=ravi)
    services.task_release(task_id=task.pk, user=rita)
    decide(task, ravi)
    assert task_of(run).decided_by == ravi


def test_only_readers_of_a_task_may_comment_on_it(olga, rita):
    run = start(approval_flow(olga, assignee_group=None, assignee_user="rita"))
    outsider = reviewer("otto")
    with pytest.raises(services.ApprovalRefused, match="in another queue"):
        services.task_comment(task_id=task_of(run).pk, user=outsider, body="Me too")
    services.task_comment(task_id=task_of(run).pk, user=rita, body="Checking the photos.")
    assert [c["body"] for c in task_of(run).comments] == ["Checking the photos."]


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_decisions_make_one_decision_and_one_resumption(olga):
    deciders = [reviewer(f"reviewer{n}") for n in range(20)]
    run = start(approval_flow(olga))
    task_id = task_of(run).pk
    barrier = threading.Barrier(len(deciders))
    outcomes: list[str] = []

    def attempt(user, decision):
        try:
            barrier.wait()
            services.task_decide(task_id=task_id, user=user, decision=decision,
                                 fields={"refund_kind": "card"})  # fmt: skip
            outcomes.append("decided")
        except services.AlreadyDecided:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=attempt, args=(user, ("approved", "rejected")[n % 2]))
        for n, user in enumerate(deciders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["decided"] + ["refused"] * 19
    types = event_types(run)
    assert types.count("approval.decided") == 1
    assert types.count("run.succeeded") == 1
    review_ends = Event.objects.filter(
        stream=run.stream, type="step.succeeded", payload__node="review"
    )
    assert review_ends.count() == 1
    task = task_of(run)
    port = review_ends.get().payload["port"]
    assert task.decision == port
    branch = "done" if port == "approved" else "declined"
    assert statuses(run)[branch] == "succeeded"


# --- separation of duties ---------------------------------------------------------


def test_who_started_the_run_may_not_decide_it(olga, rita, ravi):
    run = start(approval_flow(olga, separation_of_duties=True), actor="user:rita")
    with pytest.raises(services.ApprovalRefused, match="you started this run"):
        decide(task_of(run), rita)
    with pytest.raises(services.ApprovalRefused, match="you started this run"):
        services.task_claim(task_id=task_of(run).pk, user=rita)
    decide(task_of(run), ravi)
    assert Run.objects.get(pk=run.pk).status == "succeeded"


def test_who_approved_an_earlier_step_may_not_approve_a_later_one(olga, rita, ravi):
    run = start(two_step_flow(olga))
    services.task_decide(task_id=task_of(run, "first").pk, user=rita, decision="approved")
    second = task_of(run, "second")
    with pytest.raises(services.ApprovalRefused, match="approved an earlier step"):
        services.task_decide(task_id=second.pk, user=rita, decision="approved")
    services.task_decide(task_id=second.pk, user=ravi, decision="approved")
    assert Run.objects.get(pk=run.pk).status == "succeeded"


def test_without_the_flag_the_starter_may_decide(olga, rita):
    run = start(approval_flow(olga), actor="user:rita")
    decide(task_of(run), rita)
    assert Run.objects.get(pk=run.pk).status == "succeeded"


# --- SLA, reminders, escalation -------------------------------------------------


def escalating_flow(olga, then="keep_waiting", **config):
    escalation = {"group": SUPERVISORS, "hours": 8, "then": then}
    return approval_flow(olga, sla_hours=4, escalation=escalation, **config)


@pytest.fixture
def sla_sweep_at(django_capture_on_commit_callbacks):
    """The approvals' SLA sweep at ``moment``, running what it dispatches."""

    def sweep_sla(moment):
        with clock.frozen_at(moment), django_capture_on_commit_callbacks(execute=True):
            return sweep.sweep(moment)

    return sweep_sla


def test_the_sla_passes_and_the_task_escalates_to_the_supervisors(olga, rita, sam, sla_sweep_at):
    run = start(escalating_flow(olga))
    mail.outbox.clear()
    assert sla_sweep_at(T0 + dt.timedelta(hours=3, minutes=59)) == {
        "reminded": 0, "breached": 0}  # fmt: skip
    assert sla_sweep_at(T0 + dt.timedelta(hours=4, seconds=1)) == {
        "reminded": 0, "breached": 1}  # fmt: skip
    task = task_of(run)
    assert (task.assignee_group.name, task.escalation_level, task.breaches) == (SUPERVISORS, 1, 1)
    # The second SLA counts from the missed due time.
    assert task.due_at == T0 + dt.timedelta(hours=12)
    escalated = Event.objects.get(stream=run.stream, type="approval.escalated")
    assert escalated.payload["from_group"] == "Reviewer"
    assert escalated.actor == "system:sla"
    assert selectors.metrics() == {"backlog": 1, "breaches": 1, "escalated": 1}
    assert [m.to for m in mail.outbox] == [["sam@example.com"]]
    assert mail.outbox[0].subject.startswith("[Ledgerflow] Escalated to Finance leads")
    with pytest.raises(services.ApprovalRefused, match="escalated to Finance leads"):
        decide(task, rita)
    decide(task, sam)
    assert Run.objects.get(pk=run.pk).status == "succeeded"


def test_two_sweeps_at_the_same_moment_escalate_once(olga, sam, sla_sweep_at):
    run = start(escalating_flow(olga))
    later = T0 + dt.timedelta(hours=5)
    sla_sweep_at(later)
    sla_sweep_at(later)
    assert event_types(run).count("approval.escalated") == 1


def test_a_second_breach_auto_rejects_by_the_flows_policy(olga, sam, sla_sweep_at):
    run = start(escalating_flow(olga, then="auto_reject"))
    sla_sweep_at(T0 + dt.timedelta(hours=5))
    sla_sweep_at(T0 + dt.timedelta(hours=12, seconds=1))
    task = task_of(run)
    assert (task.decision, task.decided_by_name, task.breaches) == ("rejected", "system:sla", 2)
    assert statuses(run)["declined"] == "succeeded"
    assert Run.objects.get(pk=run.pk).status == "succeeded"


def test_a_second_breach_dead_letters_and_a_replay_asks_again(olga, sam, sla_sweep_at):
    run = start(escalating_flow(olga, then="dead_letter"))
    sla_sweep_at(T0 + dt.timedelta(hours=5))
    sla_sweep_at(T0 + dt.timedelta(hours=13))
    assert task_of(run).status == TaskStatus.ABANDONED
    step = Step.objects.get(run=run, node_id="review")
    assert step.status == "dead_lettered"
    assert "Nobody decided in time" in step.error
    with clock.frozen_at(T0 + dt.timedelta(hours=14)):
        driver.replay_dead_letter(run.pk, "review", actor="user:olga")
    again = task_of(run, attempt=2)
    assert (again.status, again.assignee_group.name, again.escalation_level) == (
        "open",
        "Reviewer",
        0,
    )


def test_a_second_breach_keeps_waiting_and_is_counted(olga, sam, sla_sweep_at):
    run = start(escalating_flow(olga, then="keep_waiting"))
    sla_sweep_at(T0 + dt.timedelta(hours=5))
    sla_sweep_at(T0 + dt.timedelta(hours=13))
    sla_sweep_at(T0 + dt.timedelta(hours=30))
    task = task_of(run)
    assert (task.status, task.breaches, task.due_at, task.escalation_level) == ("open", 2, None, 2)
    assert event_types(run).count("approval.sla_breached") == 1


def test_without_an_escalation_the_flows_policy_applies_at_the_first_breach(
    olga, rita, sla_sweep_at
):
    flow = approval_flow(olga, sla_hours=4, settings={"approval_breach_policy": "auto_reject"})
    run = start(flow)
    sla_sweep_at(T0 + dt.timedelta(hours=4))
    task = task_of(run)
    assert (task.decision, task.decided_by_name, task.breaches) == ("rejected", "system:sla", 1)
    assert statuses(run)["declined"] == "succeeded"


def test_the_nodes_own_policy_overrides_the_flows(olga, sam, sla_sweep_at):
    escalation = {"group": SUPERVISORS, "hours": 8, "then": "keep_waiting"}
    flow = approval_flow(
        olga, sla_hours=4, escalation=escalation,
        settings={"approval_breach_policy": "dead_letter"},
    )  # fmt: skip
    run = start(flow)
    sla_sweep_at(T0 + dt.timedelta(hours=4))
    sla_sweep_at(T0 + dt.timedelta(hours=12))
    assert (task_of(run).status, task_of(run).breaches) == ("open", 2)


def test_reminders_go_out_before_the_due_time(olga, rita, sla_sweep_at):
    run = start(approval_flow(olga, sla_hours=4, remind_before_hours=[1, 2]))
    assert task_of(run).remind_at == T0 + dt.timedelta(hours=2)
    mail.outbox.clear()
    sla_sweep_at(T0 + dt.timedelta(hours=2, minutes=1))
    assert task_of(run).remind_at == T0 + dt.timedelta(hours=3)
    sla_sweep_at(T0 + dt.timedelta(hours=3, minutes=1))
    assert task_of(run).remind_at is None
    assert event_types(run).count("approval.reminded") == 2
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["[Ledgerflow] Reminder"] * 2


def test_supervisors_are_reminded_before_their_own_due_time(olga, sam, sla_sweep_at):
    run = start(escalating_flow(olga, remind_before_hours=[1]))
    sla_sweep_at(T0 + dt.timedelta(hours=4))
    assert task_of(run).remind_at == T0 + dt.timedelta(hours=11)
    mail.outbox.clear()
    sla_sweep_at(T0 + dt.timedelta(hours=11))
    assert [m.to for m in mail.outbox] == [["sam@example.com"]]


def test_an_unknown_assignee_group_makes_a_dead_letter_not_a_crash(olga):
    run = start(approval_flow(olga, assignee_group="Nobody here"))
    step = Step.objects.get(run=run, node_id="review")
    assert step.status == "dead_lettered"
    assert "assignee group “Nobody here” does not exist" in step.error


# --- the projection ---------------------------------------------------------------


def task_rows() -> list[dict]:
    return list(ApprovalTask.objects.order_by("run_id", "node_id", "attempt").values(
        *[f.attname for f in ApprovalTask._meta.concrete_fields if f.name != "id"]))  # fmt: skip


def test_rebuild_projections_derives_the_same_tasks_from_events(
    olga, rita, ravi, sam, adam, sla_sweep_at
):
    first = start(escalating_flow(olga))
    second = start(approval_flow(olga, slug="other"))
    third = start(approval_flow(olga, slug="third"))
    services.task_claim(task_id=task_of(second).pk, user=rita)
    services.task_comment(task_id=task_of(second).pk, user=rita, body="Asking the customer.")
    services.task_release(task_id=task_of(second).pk, user=rita)
    services.task_reassign(task_id=task_of(second).pk, by=adam, user=ravi)
    sla_sweep_at(T0 + dt.timedelta(hours=5))
    decide(task_of(first), sam, comment="ok")
    driver.cancel_run(third.pk, actor="user:olga", reason="duplicate")
    before = task_rows()
    assert len(before) == 3
    out = io.StringIO()
    call_command("rebuild_projections", stdout=out)
    assert "approval tasks: 3 rows rebuilt from events" in out.getvalue()
    assert task_rows() == before


def test_the_beat_task_sweeps_at_the_time_it_is_given(olga, sam, settings):
    from approvals import tasks

    assert settings.CELERY_BEAT_SCHEDULE["approvals-sla-sweep"]["task"] == tasks.sweep_slas.name
    run = start(escalating_flow(olga))
    assert tasks.sweep_slas((T0 + dt.timedelta(hours=1)).isoformat()) == {
        "reminded": 0, "breached": 0}  # fmt: skip
    assert tasks.sweep_slas((T0 + dt.timedelta(hours=4)).isoformat()) == {
        "reminded": 0, "breached": 1}  # fmt: skip
    assert task_of(run).escalation_level == 1
