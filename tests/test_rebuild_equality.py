"""Every projection, dropped and derived again from the events alone, equals
the rows the live writers left: a mixed workload with a saga whose
compensations ran, a loop, sub-flows, approvals, a retry in flight, a dead
letter, a delay, a cancellation and a run moved to a newer version."""

import datetime as dt
import io

from django.contrib.auth.models import Group
from django.core.management import call_command

from approvals import services as approvals
from approvals.calendars import calendar_save
from approvals.models import ApprovalTask, BusinessCalendar
from connectors.triggers import backfills, schedules
from connectors.triggers.models import Backfill, Receipt
from flows import services, testruns
from flows import services as flows
from flows.management.commands.seed_demo import order_graph
from flows.models import Team
from flows.teams import team_create, team_members_set, team_update
from runs import driver, triage
from runs.ground import clock
from runs.models import DeadLetterAssignment, DeadLetterNote, Run, Step, Timer
from tests.approval_helpers import approval_flow
from tests.engine_helpers import chain, publish, transform
from tests.payments_helpers import charge_node, control
from tests.projection_helpers import differences, projected_rows

START = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def saga_flow(olga, payments):
    """charge -> reserve -> confirm, where confirm fails the run: both
    effects are undone, newest first, as compensation steps of their own."""
    graph = order_graph()
    for node in graph["nodes"]:
        if "base_url" in node.get("config", {}):
            node["config"]["base_url"] = payments.url
        if node["id"] == "confirm":
            node["config"] = {"fields": {"late": "{{ trigger.missing.deep }}"}}
            node["on_failure"] = "fail_run"
    return publish(olga, graph, slug="saga")


def loop_flow(olga, payments):
    body = {
        "type": "http.request",
        "config": {
            "method": "POST",
            "url": f"{payments.url}/charges",
            "json_body": {"order_id": "{{ item.id }}", "amount": "{{ item.amount }}"},
            "honours_idempotency_key": True,
            "timeout_seconds": 5,
        },
    }
    each = {"id": "each", "type": "loop",
            "config": {"items": "{{ trigger.orders }}", "batch_size": 2, "body": body}}  # fmt: skip
    return publish(olga, chain(each), slug="loop")


def charge_flow(olga, payments):
    charge = charge_node(payments, retry={"max_attempts": 2, "initial_seconds": 60, "jitter": 0})
    return publish(olga, chain(transform("prepare", ok=True), charge), slug="orders")


def subflow_flows(olga):
    publish(
        olga,
        chain(
            {"id": "settle", "type": "delay", "config": {"seconds": 60}},
            transform("done", doubled="{{ trigger.x * 2 }}"),
        ),
        slug="child",
    )
    call = {"id": "call", "type": "subflow",
            "config": {"flow": "child", "input": {"x": "{{ trigger.x }}"}}}  # fmt: skip
    return publish(olga, chain(call, transform("after", got="{{ steps.call.output }}")),
                   slug="parent")  # fmt: skip


def reference_data(olga, rita, adam, flow) -> None:
    """A renamed, restricted team owning a flow, with members changed, and a
    group's business calendar saved twice."""
    team = team_create(name="Payments", actor=adam, members=[olga])
    team_update(team=team, actor=adam, name="Payments EU", restricts_edits=True)
    team_members_set(team=team, actor=adam, members=[olga, rita])
    flows.flow_update(flow=flow, actor=adam, data={"team": team})
    reviewers = Group.objects.get(name="Reviewer")
    hours = {"mon": [["09:00", "17:00"]]}
    for holidays in ([], ["2026-12-25"]):
        calendar_save(group=reviewers, actor=adam, time_zone="Europe/Berlin",
                      opening_hours=hours, holidays=holidays)  # fmt: skip


def draft_test_runs(olga, payments, eager_celery) -> list:
    """Test runs of a flow that is still a draft: the whole draft with a
    pinned node, and its charge on its own on the outputs before it (a
    snapshot of its own: the step and the nodes before it)."""
    charge = {"id": "charge", "type": "http.request", "config": {
        "method": "POST", "url": f"{payments.url}/charges", "honours_idempotency_key": True,
        "json_body": {"order_id": "{{ steps.shape.output.order }}", "amount": 3}}}  # fmt: skip
    graph = chain(transform("shape", order="{{ trigger.order }}"), charge,
                  transform("after", seen="{{ steps.charge.output.body.id }}"))  # fmt: skip
    flow = services.flow_create(actor=olga, data={"name": "Draft", "slug": "draft-tests"})
    pinned = {"shape": {"order": "P-1"}}
    services.flow_save_draft(flow=flow, actor=olga, graph={**graph, "pinned": pinned})
    flow.refresh_from_db()
    with clock.frozen_at(START), eager_celery():
        whole = testruns.test_run_start(flow=flow, actor="user:olga", input={"order": "T-1"},
                                        confirm_side_effects=True)  # fmt: skip
    with clock.frozen_at(START), eager_celery():
        single = testruns.test_run_start(flow=flow, actor="user:olga", input={"order": "T-2"},
                                         confirm_side_effects=True, node="charge")  # fmt: skip
    return [whole, single]


def migrated_run(olga, payments, start, at, eager_celery):
    """A run whose charge dead-lettered on version 1, moved in place to
    version 2 (its pending note dropped, a delay and a receipt added) and
    replayed there: it waits on the new version's delay."""
    node = charge_node(payments, retry={"max_attempts": 1})
    first = chain(transform("prepare", ok=True), node, transform("old_note", x="1"))
    moving = publish(olga, first, slug="moving")
    control(payments, fail_next=1, fail_status=400)
    run = start(moving, at=at, order_id="m-1", amount=4)
    settle = {"id": "settle", "type": "delay", "config": {"seconds": 600}}
    publish(olga, chain(transform("prepare", ok=True), node, settle,
                        transform("receipt", ok=True)), slug="moving")  # fmt: skip
    with clock.frozen_at(at), eager_celery():
        driver.replay_on_newest(run.pk, "charge", actor="user:olga")
    return run


def backfilled_flow(olga, eager_celery) -> None:
    """A schedule that fired live, and two backfills of it: one with runs
    in flight and one cancelled."""
    trigger = {"id": "start", "type": "trigger.schedule",
               "config": {"cron": "0 * * * *", "timezone": "UTC"}}  # fmt: skip
    wait = {"id": "wait", "type": "delay", "config": {"seconds": 600}}
    graph = {"nodes": [trigger, wait], "edges": [{"from": "start", "to": "wait"}]}
    with clock.frozen_at(START - dt.timedelta(hours=2, minutes=30)):
        flow = publish(olga, graph, slug="hourly")
    with clock.frozen_at(START):
        schedules.sweep(START)
    with clock.frozen_at(START), eager_celery():
        first = backfills.backfill_request(flow, start=START - dt.timedelta(days=1),
                                           end=START, max_in_flight=2, actor=olga)  # fmt: skip
    with clock.frozen_at(START), eager_celery():
        backfills.backfill_request(flow, start=START - dt.timedelta(days=2),
                                   end=START - dt.timedelta(days=1, hours=1), max_in_flight=3,
                                   actor=olga)  # fmt: skip
        backfills.backfill_cancel(first.pk, actor=olga)


def test_every_projection_rebuilds_to_the_rows_the_live_writers_left(
    olga, rita, adam, payments, eager_celery, sweep_at
):
    saga, loop, charge = (
        saga_flow(olga, payments),
        loop_flow(olga, payments),
        charge_flow(olga, payments),
    )
    parent = subflow_flows(olga)
    refunds = approval_flow(olga)
    delay = publish(olga, chain({"id": "wait", "type": "delay", "config": {"seconds": 600}}),
                    slug="delay")  # fmt: skip

    def start(flow, at=START, **data):
        with clock.frozen_at(at), eager_celery():
            return driver.start_run(flow=flow, input=data, actor="user:olga")

    compensated = start(saga, order_id="S-1", amount=42, sku="BOOK-1")
    looped = start(loop, orders=[{"id": f"L-{n}", "amount": n + 1} for n in range(5)])
    start(charge, order_id="ok-1", amount=5)
    finished_parent = start(parent, x=21)
    decided = start(refunds, order_id="A-1", amount=9, reason="broken")
    waiting_approval = start(refunds, order_id="A-2", amount=3, reason="late")
    waiting = start(delay)
    cancelled = start(delay)
    tested = draft_test_runs(olga, payments, eager_celery)
    later = START + dt.timedelta(seconds=61)
    sweep_at(later)  # the first child ends and resumes its parent
    waiting_parent = start(parent, at=later, x=1)
    control(payments, fail_next=1)
    retrying = start(charge, at=later, order_id="r-1", amount=5)
    dead = start(charge, at=later, order_id="d-1", amount=-5)
    dead_letter = start(charge, at=later, order_id="d-2", amount=-5)
    migrated = migrated_run(olga, payments, start, later, eager_celery)
    with clock.frozen_at(later), eager_celery():
        task = ApprovalTask.objects.get(run=decided)
        approvals.task_decide(task_id=task.pk, user=rita, decision="approved",
                              fields={"refund_kind": "card"})  # fmt: skip
    driver.cancel_run(cancelled.pk, actor="user:olga", reason="test")
    # Lineage: a replay, and a failed run resumed with its dead letter then
    # replayed on an edited input (a new revision).
    with clock.frozen_at(later), eager_celery():
        replayed = driver.replay_run(looped.pk, actor="user:olga")
        driver.discard_dead_letter(dead.pk, "charge", actor="user:olga", reason="bad amount")
        resumed = driver.resume_run(dead.pk, actor="user:olga")
    edited = dict(Step.objects.get(run=resumed, node_id="charge").input)
    edited["json_body"] = {**edited["json_body"], "amount": 5}
    with clock.frozen_at(later), eager_celery():
        driver.replay_dead_letter(resumed.pk, "charge", actor="user:olga", edited_input=edited,
                                  edited=True)  # fmt: skip

    statuses = dict(Run.objects.values_list("pk", "status"))
    assert statuses[compensated.pk] == "compensated"
    undo = list(Step.objects.filter(run=compensated, node_id__endswith="~undo")
                .values_list("node_id", "status"))  # fmt: skip
    assert sorted(undo) == [("charge~undo", "succeeded"), ("reserve~undo", "succeeded")]
    for run in (looped, finished_parent, decided):
        assert statuses[run.pk] == "succeeded"
    assert statuses[waiting_parent.pk] == statuses[waiting_approval.pk] == "waiting"
    assert statuses[waiting.pk] == "waiting" and statuses[cancelled.pk] == "cancelled"
    assert Step.objects.get(run=retrying, node_id="charge").status == "retrying"
    assert Step.objects.get(run=dead_letter, node_id="charge").status == "dead_lettered"
    assert statuses[dead.pk] == "failed" and statuses[replayed.pk] == "succeeded"
    assert statuses[resumed.pk] == "succeeded"
    # Moved to version 2 (a node dropped, two added): its delay waits there.
    assert (statuses[migrated.pk], Run.objects.get(pk=migrated.pk).version_number) == (
        "waiting", 2)  # fmt: skip
    assert list(Step.objects.filter(run=migrated).order_by("position")
                .values_list("node_id", "status")) == [
        ("start", "succeeded"), ("prepare", "succeeded"), ("charge", "succeeded"),
        ("settle", "waiting"), ("receipt", "pending")]  # fmt: skip
    charge = Step.objects.get(run=resumed, node_id="charge")
    assert (charge.revision, Step.objects.get(run=resumed, node_id="prepare").status) == (
        1, "succeeded")  # fmt: skip

    reference_data(olga, rita, adam, saga)
    # Triage of the dead letter left waiting: assigned twice, taken back
    # from one, annotated (streams of their own).
    letter = [(dead_letter.pk, "charge")]
    triage.dead_letters_assign(steps=letter, assignee="rita", actor="user:olga")
    triage.dead_letters_assign(steps=letter, assignee="olga", actor="user:adam")
    triage.dead_letters_annotate(steps=letter, text="amount is negative", actor="user:olga")

    assert [Run.objects.get(pk=r.pk).status for r in tested] == ["succeeded", "succeeded"]
    assert [r.is_test for r in tested] == [True, True]
    backfilled_flow(olga, eager_celery)
    before = projected_rows()
    assert sorted(row["status"] for row in before["Backfill"]) == ["active", "cancelled"]
    assert len({row["backfill_id"] for row in before["Receipt"]}) == 3  # live, and two backfills
    assert len(before["DraftSnapshot"]) == 2  # the whole draft, and the single step's part
    assert len(before["Timer"]) >= 3  # the retry, the delay, the waiting child's delay
    assert len(before["ApprovalTask"]) == 2
    assert len(before["Team_members"]) == 2 and len(before["BusinessCalendar"]) == 1
    assert [row["assignee"] for row in before["DeadLetterAssignment"]] == ["olga"]
    assert len(before["DeadLetterNote"]) == 1
    Timer.objects.all().delete()
    Step.objects.all().delete()
    ApprovalTask.objects.all().delete()
    Run.objects.all().delete()
    # Flows keep their team through the rebuild, from the events alone.
    Team.objects.all().delete()
    BusinessCalendar.objects.all().delete()
    DeadLetterAssignment.objects.all().delete()
    DeadLetterNote.objects.all().delete()
    Receipt.objects.all().delete()
    Backfill.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    after = projected_rows()
    assert {table: differences(rows, after[table]) for table, rows in before.items()} == {
        table: [] for table in before
    }
