"""Separation of duties across a run's lineage: the runs resumed, replayed
as new or started as sub-flows from one another. Reproduces the two reported
bypasses (a resumed run; an admin reassigning to himself after a resume)."""

import importlib
import io

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.core.management import call_command

from approvals import links, services
from approvals.models import ApprovalTask
from config.roles import ADMIN, REVIEWER
from runs import driver
from runs.ground.models import Event
from runs.models import Run
from tests.approval_helpers import INPUT, approval_node, reviewer, task_of
from tests.conftest import login
from tests.engine_helpers import publish, transform
from tests.localserver import Reply


@pytest.fixture
def vera(db):
    return reviewer("vera")


@pytest.fixture
def shipping(local_server):
    """The remote the middle step calls: it fails until ``fixed`` is set."""
    state = {"fixed": False}

    def ship(seen):
        return Reply(200, {"ok": True}) if state["fixed"] else Reply(404, {"error": "no route"})

    server = local_server({"/ship": ship})
    server.state = state
    return server


def a1_ship_a2(olga, shipping, **config) -> dict:
    """trigger -> a1 -> ship (an HTTP call) -> a2 -> done."""
    config = {"fields": [], **config}
    graph = {
        "nodes": [
            {"id": "start", "type": "trigger.manual"},
            approval_node("a1", **config),
            {"id": "ship", "type": "http.request",
             "config": {"method": "POST", "url": f"{shipping.url}/ship"},
             "retry": {"max_attempts": 1}},
            approval_node("a2", **config),
            transform("done", ok=True),
        ],
        "edges": [
            {"from": "start", "to": "a1"},
            {"from": "a1", "from_port": "approved", "to": "ship"},
            {"from": "ship", "to": "a2"},
            {"from": "a2", "from_port": "approved", "to": "done"},
        ],
    }  # fmt: skip
    return publish(olga, graph, slug="lineage")


def fail_and_resume(run, shipping, eager_celery, *, by="user:olga") -> Run:
    """The middle step dead-letters; an operator discards it (the run fails),
    fixes the remote and resumes: a new run that carries ``a1`` over."""
    assert run.steps.get(node_id="ship").status == "dead_lettered"
    driver.discard_dead_letter(run.pk, "ship", actor="user:olga", reason="route missing")
    shipping.state["fixed"] = True
    with eager_celery():
        return driver.resume_run(run.pk, actor=by)


def approve(task, user, **kwargs):
    return services.task_decide(task_id=task.pk, user=user, decision="approved", **kwargs)


def started_run(flow, eager_celery, actor="user:olga") -> Run:
    with eager_celery():
        return driver.start_run(flow=flow, input=INPUT, actor=actor)


# --- the lineage itself -------------------------------------------------------


def test_resumed_and_replayed_runs_share_the_lineage_not_the_root(
    olga, rita, shipping, eager_celery
):
    first = started_run(a1_ship_a2(olga, shipping), eager_celery)
    with eager_celery():
        approve(task_of(first, "a1"), rita)
    resumed = fail_and_resume(Run.objects.get(pk=first.pk), shipping, eager_celery)
    first.refresh_from_db()
    assert first.lineage_id == first.pk
    assert (resumed.lineage_id, resumed.root_run_id) == (first.pk, first.pk)
    started = Event.objects.get(stream=resumed.stream, type="run.started")
    assert started.payload["lineage_id"] == first.pk
    # Reject a2, so the run ends and can be replayed as new: new root, same lineage.
    services.task_decide(task_id=task_of(resumed, "a2").pk, user=olga_reviewer(olga),
                         decision="rejected")  # fmt: skip
    with eager_celery():
        replayed = driver.replay_run(resumed.pk, actor="user:olga")
    assert replayed.root_run_id == replayed.pk
    assert replayed.lineage_id == first.pk


def olga_reviewer(olga):
    olga.groups.add(Group.objects.get(name=REVIEWER))
    return olga


def test_a_sub_flow_run_joins_its_parents_lineage(olga, eager_celery):
    publish(olga, {"nodes": [{"id": "start", "type": "trigger.manual"},
                             {"id": "wait", "type": "delay", "config": {"seconds": 60}}],
                   "edges": [{"from": "start", "to": "wait"}]}, slug="child")  # fmt: skip
    parent_flow = publish(olga, {
        "nodes": [{"id": "start", "type": "trigger.manual"},
                  {"id": "call", "type": "subflow", "config": {"flow": "child", "input": {}}}],
        "edges": [{"from": "start", "to": "call"}]}, slug="parent")  # fmt: skip
    resumed_parent = started_run(parent_flow, eager_celery)
    child = Run.objects.get(parent_run_id=resumed_parent.pk)
    assert child.lineage_id == resumed_parent.pk
    # A grandchild of a resumed run would share the first run's lineage:
    # the child takes its parent's lineage, not its parent's id.
    Run.objects.filter(pk=resumed_parent.pk).update(lineage_id=7)
    assert driver.lineage_of(resumed_parent.pk) == 7


def test_the_lineage_survives_a_projection_rebuild(olga, rita, shipping, eager_celery):
    first = started_run(a1_ship_a2(olga, shipping), eager_celery)
    with eager_celery():
        approve(task_of(first, "a1"), rita)
    resumed = fail_and_resume(Run.objects.get(pk=first.pk), shipping, eager_celery)
    ApprovalTask.objects.all().delete()
    Run.objects.update(lineage_id=None)
    call_command("rebuild_projections", stdout=io.StringIO())
    assert Run.objects.get(pk=resumed.pk).lineage_id == first.pk
    assert Run.objects.get(pk=first.pk).lineage_id == first.pk


def test_the_migration_fills_the_lineage_of_existing_runs(olga, rita, shipping, eager_celery):
    first = started_run(a1_ship_a2(olga, shipping), eager_celery)
    with eager_celery():
        approve(task_of(first, "a1"), rita)
    resumed = fail_and_resume(Run.objects.get(pk=first.pk), shipping, eager_celery)
    Run.objects.update(lineage_id=None)
    migration = importlib.import_module("runs.migrations.0007_run_lineage")
    migration.fill_lineage(apps, None)
    assert Run.objects.get(pk=resumed.pk).lineage_id == first.pk


# --- the reported bypasses ----------------------------------------------------


def test_the_same_reviewer_cannot_approve_a2_after_a_resume(
    olga, rita, ravi, shipping, eager_celery
):
    """Run 42: rita approves a1, a later step dead-letters, it is discarded and
    the run resumed as run 43 with a1 carried over; rita may not approve a2."""
    first = started_run(a1_ship_a2(olga, shipping, separation_of_duties=True), eager_celery)
    with eager_celery():
        approve(task_of(first, "a1"), rita)
    resumed = fail_and_resume(Run.objects.get(pk=first.pk), shipping, eager_celery)
    a2 = task_of(resumed, "a2")
    with pytest.raises(services.ApprovalRefused, match="approved an earlier step"):
        approve(a2, rita)
    with pytest.raises(services.ApprovalRefused, match="approved an earlier step"):
        services.task_claim(task_id=a2.pk, user=rita)
    assert task_of(resumed, "a2").status == "open"
    with eager_celery():
        approve(a2, ravi)
    assert Run.objects.get(pk=resumed.pk).status == "succeeded"


def test_an_admin_cannot_reassign_to_himself_and_approve_his_own_run(
    olga, adam, rita, shipping, eager_celery
):
    """Adam starts the run; after a resume (by someone else) he reassigns the
    task to himself and approves it: both are refused."""
    first = started_run(
        a1_ship_a2(olga, shipping, separation_of_duties=True), eager_celery, actor="user:adam"
    )
    with eager_celery():
        approve(task_of(first, "a1"), rita)
    resumed = fail_and_resume(Run.objects.get(pk=first.pk), shipping, eager_celery)
    a2 = task_of(resumed, "a2")
    with pytest.raises(services.ApprovalRefused, match="adam may not decide this task"):
        services.task_reassign(task_id=a2.pk, by=adam, user=adam)
    # Even a task whose queue he is in (his group) stays out of his hands.
    adam.groups.add(Group.objects.get(name=REVIEWER))
    for act in (services.task_claim, approve):
        with pytest.raises(services.ApprovalRefused, match="you started this run"):
            act(task_of(resumed, "a2"), adam) if act is approve else act(task_id=a2.pk, user=adam)
    assert task_of(resumed, "a2").status == "open"


def test_the_starter_of_a_resume_cannot_decide_either(olga, rita, ravi, shipping, eager_celery):
    first = started_run(a1_ship_a2(olga, shipping, separation_of_duties=True), eager_celery)
    with eager_celery():
        approve(task_of(first, "a1"), rita)
    resumed = fail_and_resume(Run.objects.get(pk=first.pk), shipping, eager_celery, by="user:ravi")
    with pytest.raises(services.ApprovalRefused, match="you started this run"):
        approve(task_of(resumed, "a2"), ravi)


def test_the_starter_of_a_parent_run_cannot_decide_its_sub_flows_task(olga, rita, eager_celery):
    publish(olga, {"nodes": [{"id": "start", "type": "trigger.manual"},
                             approval_node("check", fields=[], separation_of_duties=True)],
                   "edges": [{"from": "start", "to": "check"}]}, slug="child")  # fmt: skip
    parent_flow = publish(olga, {
        "nodes": [{"id": "start", "type": "trigger.manual"},
                  {"id": "call", "type": "subflow",
                   "config": {"flow": "child", "input": INPUT}}],
        "edges": [{"from": "start", "to": "call"}]}, slug="parent")  # fmt: skip
    parent = started_run(parent_flow, eager_celery, actor="user:rita")
    child = Run.objects.get(parent_run_id=parent.pk)
    with pytest.raises(services.ApprovalRefused, match="you started this run"):
        approve(task_of(child, "check"), rita)


# --- one person, one decision per lineage ---------------------------------------


def test_distinct_deciders_forbid_one_person_deciding_two_tasks_of_a_lineage(
    olga, rita, ravi, shipping, eager_celery
):
    first = started_run(a1_ship_a2(olga, shipping, distinct_deciders=True), eager_celery)
    with eager_celery():
        approve(task_of(first, "a1"), rita)
    resumed = fail_and_resume(Run.objects.get(pk=first.pk), shipping, eager_celery)
    a2 = task_of(resumed, "a2")
    assert a2.distinct_deciders and not a2.separation_of_duties
    for decision in ("approved", "rejected"):
        with pytest.raises(services.ApprovalRefused, match="two tasks of the same run lineage"):
            services.task_decide(task_id=a2.pk, user=rita, decision=decision)
    # Without the rule (and without separation of duties) nothing stops rita.
    with eager_celery():
        approve(a2, ravi)
    assert Run.objects.get(pk=resumed.pk).status == "succeeded"


def test_without_either_rule_the_same_reviewer_may_decide_both(olga, rita, shipping, eager_celery):
    first = started_run(a1_ship_a2(olga, shipping), eager_celery, actor="user:rita")
    with eager_celery():
        approve(task_of(first, "a1"), rita)
    resumed = fail_and_resume(Run.objects.get(pk=first.pk), shipping, eager_celery)
    with eager_celery():
        approve(task_of(resumed, "a2"), rita)
    assert Run.objects.get(pk=resumed.pk).status == "succeeded"


# --- the actor is the person; the means is recorded beside it ---------------------


def test_a_decision_from_an_email_link_records_the_person_and_the_means(
    client, olga, rita, vera, shipping, eager_celery, django_capture_on_commit_callbacks
):
    run = started_run(a1_ship_a2(olga, shipping, assignee_group=None, assignee_user="rita",
                                 separation_of_duties=True), eager_celery)  # fmt: skip
    task = task_of(run, "a1")
    token = links.make_token(task_id=task.pk, user_id=rita.pk)
    page = login(client, rita).get(f"/approvals/link/{token}/")
    assert 'name="via" value="email-link"' in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"/approvals/tasks/{task.pk}/decide/", {"decision": "approved", "via": "email-link"}
        )
    decided = Event.objects.get(stream=run.stream, type="approval.decided")
    assert decided.actor == "user:rita"
    assert (decided.payload["user"], decided.payload["via"]) == ("rita", "email-link")
    step_event = Event.objects.get(stream=run.stream, type="step.succeeded", payload__node="a1")
    assert step_event.actor == "user:rita"
    # What the decision set going (the next steps) is the engine's, not rita's.
    later = Event.objects.filter(stream=run.stream, seq__gt=step_event.seq)
    assert later.exists()
    assert set(later.values_list("actor", flat=True)) == {"system:engine"}


def test_an_admin_page_reassignment_to_a_conflicted_person_is_refused(
    client, olga, adam, rita, shipping, eager_celery
):
    adam.groups.add(Group.objects.get(name=ADMIN))
    run = started_run(a1_ship_a2(olga, shipping, separation_of_duties=True), eager_celery,
                      actor="user:rita")  # fmt: skip
    task = task_of(run, "a1")
    response = login(client, adam).post(
        f"/approvals/tasks/{task.pk}/reassign/", {"assignee": "user:rita"}, follow=True
    )
    assert "rita may not decide this task" in response.content.decode()
    assert task_of(run, "a1").assignee_user is None


# --- the demo's refund flow -------------------------------------------------------


def test_the_demo_refund_flow_asks_a_second_person_above_1000_eur(olga, adam, eager_celery):
    from flows.management.commands.seed_demo import SUPERVISORS, seed_approvals

    flow = seed_approvals(actor=adam, owner=olga)
    sam, fay = reviewer("sam", SUPERVISORS), reviewer("fay", SUPERVISORS)
    small = started_run(flow, eager_celery, actor="user:olga")  # 640 EUR: no sign-off
    with eager_celery():
        approve(task_of(small, "review"), sam, fields={"refund_kind": "card"})
    assert Run.objects.get(pk=small.pk).status == "succeeded"
    assert not ApprovalTask.objects.filter(run=small, node_id="finance").exists()

    with eager_celery():
        run = driver.start_run(flow=flow, input={**INPUT, "amount": 1500}, actor="user:olga")
        approve(task_of(run, "review"), sam, fields={"refund_kind": "card"})
    finance = task_of(run, "finance")
    assert finance.distinct_deciders and finance.assignee_group.name == SUPERVISORS
    with pytest.raises(services.ApprovalRefused, match="approved an earlier step"):
        approve(finance, sam)
    with eager_celery():
        approve(finance, fay)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.output["refund"]["approved_by"] == "sam"


def test_the_task_page_lists_the_lineages_earlier_decisions(
    client, olga, rita, ravi, shipping, eager_celery
):
    first = started_run(a1_ship_a2(olga, shipping, separation_of_duties=True), eager_celery)
    with eager_celery():
        approve(task_of(first, "a1"), rita)
    resumed = fail_and_resume(Run.objects.get(pk=first.pk), shipping, eager_celery)
    page = login(client, rita).get(f"/approvals/tasks/{task_of(resumed, 'a2').pk}/")
    html = page.content.decode()
    assert f"(run {first.pk})</span> — approved by rita" in html
    assert "you approved an earlier step" in html  # the refusal, instead of the form
