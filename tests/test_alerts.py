"""Alerts: one mail per incident (flow, error signature), open until the
flow next succeeds; incidents as projections of alert events; delivery
after commit through an outbox, retried, swept, never twice."""

import datetime as dt
import io
import smtplib

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse

from approvals import sweep
from connectors.outbound import breakers
from flows import services as flows
from flows.alerts import services
from flows.alerts.models import Incident, Outbox
from runs import driver
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run
from tests.approval_helpers import SUPERVISORS, approval_node, reviewer
from tests.conftest import login
from tests.engine_helpers import chain, publish, transform
from tests.payments_helpers import control
from tests.projection_helpers import differences, projected_rows

START = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
ONCALL = "oncall@example.com"
# One node whose expression fails differently by input: {} and {"order": {}}
# are two causes (two signatures), {"order": {"id": 1}} succeeds.
NO_ORDER, NO_ID, GOOD = {}, {"order": {}}, {"order": {"id": 1}}


def order_flow(olga, slug="orders", **facts):
    graph = chain(transform("calc", x="{{ trigger.order.id }}"))
    return publish(olga, graph, slug=slug, **{"alert_to": ONCALL, **facts})


def start(flow, eager_celery, data, at=START) -> Run:
    with clock.frozen_at(at), eager_celery():
        return driver.start_run(flow=flow, input=data, actor="user:olga")


def incidents(flow) -> list[Incident]:
    return list(Incident.objects.filter(flow=flow).order_by("id"))


def alert_events(flow) -> list[str]:
    return list(
        Event.objects.filter(stream=f"alert:flow:{flow.pk}")
        .order_by("seq")
        .values_list("type", flat=True)
    )


class DuplicateDuringSend(EmailBackend):
    """The locmem backend, during whose send a duplicate task delivers the
    same row (a redelivered message, a sweep racing the first delivery)."""

    seen: list = []

    def send_messages(self, messages):
        DuplicateDuringSend.seen.append(services.deliver(Outbox.objects.get().pk))
        return super().send_messages(messages)


class FlakyBackend(EmailBackend):
    """The locmem backend, refusing the next ``failures`` messages."""

    failures = 0

    def send_messages(self, messages):
        if FlakyBackend.failures > 0:
            FlakyBackend.failures -= 1
            raise smtplib.SMTPServerDisconnected("mail server went away")
        return super().send_messages(messages)


@pytest.fixture
def flaky_mail(settings, celery_in_thread):
    """A mail server that refuses, and tasks whose errors stay in the task
    as on a worker (Celery's eager mode then runs each retry in place)."""
    from config.celery import app

    settings.EMAIL_BACKEND = "tests.test_alerts.FlakyBackend"
    FlakyBackend.failures = 0
    app.conf.task_eager_propagates = False
    try:
        yield FlakyBackend
    finally:
        app.conf.task_eager_propagates = True
        FlakyBackend.failures = 0


# --- once per incident ------------------------------------------------------------


def test_several_dead_letters_of_one_signature_send_one_mail(olga, eager_celery):
    flow = order_flow(olga)
    mail.outbox.clear()
    runs = [start(flow, eager_celery, NO_ORDER) for _ in range(3)]
    assert all(r.steps.get(node_id="calc").status == "dead_lettered" for r in runs)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [ONCALL]
    assert message.subject == "[Ledgerflow] Incident on orders: Dead letter"
    assert "trigger has no field order" in message.body
    [incident] = incidents(flow)
    assert incident.is_open and incident.kind == "dead_letter" and incident.events == 3
    assert alert_events(flow) == [
        "alert.incident_opened", "alert.event_folded", "alert.event_folded"]  # fmt: skip
    assert Outbox.objects.get().delivered_at is not None


def test_a_different_signature_opens_a_second_incident(olga, eager_celery):
    flow = order_flow(olga)
    mail.outbox.clear()
    start(flow, eager_celery, NO_ORDER)
    start(flow, eager_celery, NO_ID)
    start(flow, eager_celery, NO_ID)
    first, second = incidents(flow)
    assert first.signature != second.signature
    assert (first.events, second.events) == (1, 2)
    assert len(mail.outbox) == 2
    # Another flow failing the same way has incidents of its own.
    other = order_flow(olga, slug="other-orders")
    start(other, eager_celery, NO_ORDER)
    assert len(incidents(other)) == 1 and len(mail.outbox) == 3


def test_a_success_closes_them_and_a_later_failure_opens_a_new_one(olga, eager_celery):
    flow = order_flow(olga)
    mail.outbox.clear()
    start(flow, eager_celery, NO_ORDER)
    start(flow, eager_celery, NO_ID)
    assert len(mail.outbox) == 2
    ok = start(flow, eager_celery, GOOD)
    assert ok.status == "succeeded"
    assert [i.closed_by_run for i in incidents(flow)] == [ok.pk, ok.pk]
    assert not Incident.objects.filter(closed_at__isnull=True).exists()
    # A second success finds nothing open and records nothing.
    start(flow, eager_celery, GOOD)
    assert alert_events(flow).count("alert.incident_closed") == 2
    start(flow, eager_celery, NO_ORDER)
    assert len(incidents(flow)) == 3 and incidents(flow)[2].is_open
    assert len(mail.outbox) == 3


def test_test_runs_of_drafts_alert_no_one(olga, eager_celery):
    from flows import testruns

    flow = order_flow(olga)
    mail.outbox.clear()
    with eager_celery():
        run = testruns.test_run_start(flow=flow, input=NO_ORDER, actor="user:olga")
    assert Run.objects.get(pk=run.pk).is_test
    assert not Incident.objects.exists() and not mail.outbox


# --- after commit only --------------------------------------------------------------


def test_the_mail_goes_after_commit_and_not_at_all_on_rollback(
    olga, eager_celery, django_capture_on_commit_callbacks
):
    flow = order_flow(olga)
    mail.outbox.clear()
    with eager_celery(), pytest.raises(RuntimeError):
        with transaction.atomic():
            driver.start_run(flow=flow, input=NO_ORDER, actor="user:olga")
            assert Incident.objects.count() == 1 and Outbox.objects.count() == 1
            raise RuntimeError("the caller's transaction fails after the dead letter")
    assert not Incident.objects.exists() and not Outbox.objects.exists()
    assert not mail.outbox
    # Committed, it is mailed only once the commit's callbacks run.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        driver.start_run(flow=flow, input=NO_ORDER, actor="user:olga")
    assert Outbox.objects.get().delivered_at is None and not mail.outbox
    for callback in callbacks:
        callback()
    assert len(mail.outbox) == 1 and Outbox.objects.get().delivered_at is not None


# --- retries, the sweep, idempotent delivery ------------------------------------------


def test_a_refused_delivery_is_retried_and_delivered_later(olga, eager_celery, flaky_mail):
    flow = order_flow(olga)
    mail.outbox.clear()
    flaky_mail.failures = 2
    start(flow, eager_celery, NO_ORDER)
    row = Outbox.objects.get()
    assert row.delivered_at is not None
    assert (row.attempts, row.last_error) == (3, "mail server went away")
    assert len(mail.outbox) == 1
    # Each attempt is recorded before the mail server is called, and how it ended.
    assert list(
        Event.objects.filter(stream=f"alert:mail:{row.pk}")
        .order_by("seq")
        .values_list("type", "payload__attempt")
    ) == [
        ("alert.delivery_started", 1), ("alert.delivery_failed", 1),
        ("alert.delivery_started", 2), ("alert.delivery_failed", 2),
        ("alert.delivery_started", 3), ("alert.notification_sent", 3),
    ]  # fmt: skip


def test_the_sweep_resends_an_undelivered_row_once(olga, eager_celery, flaky_mail):
    flow = order_flow(olga)
    mail.outbox.clear()
    flaky_mail.failures = 100  # past every retry of the task
    start(flow, eager_celery, NO_ORDER)
    row = Outbox.objects.get()
    assert row.delivered_at is None and row.attempts == 9 and not mail.outbox
    flaky_mail.failures = 0
    with eager_celery():
        assert services.sweep(START + dt.timedelta(seconds=30)) == 0  # not a minute old
        assert services.sweep(START + dt.timedelta(seconds=61)) == 1
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [ONCALL]
    with eager_celery():
        assert services.sweep(START + dt.timedelta(minutes=10)) == 0
    # Delivered once; a redelivered message (a duplicate task) sends nothing.
    assert services.deliver(row.pk) is False
    assert len(mail.outbox) == 1
    assert Event.objects.filter(type="alert.notification_sent").count() == 1


def test_a_duplicate_delivery_during_the_send_sends_nothing(olga, eager_celery, settings):
    settings.EMAIL_BACKEND = "tests.test_alerts.DuplicateDuringSend"
    DuplicateDuringSend.seen = []
    flow = order_flow(olga)
    mail.outbox.clear()
    start(flow, eager_celery, NO_ORDER)
    assert DuplicateDuringSend.seen == [False]
    assert len(mail.outbox) == 1 and Outbox.objects.get().delivered_at is not None


class DiesDuringSend(EmailBackend):
    def send_messages(self, messages):
        raise SystemExit("the worker process is killed mid-send")


def test_a_delivery_cut_off_mid_send_is_resent_once_its_claim_lapses(
    olga, settings, celery_in_thread
):
    flow = order_flow(olga)
    with clock.frozen_at(START):
        driver.start_run(flow=flow, input=NO_ORDER, actor="user:olga")
    row = Outbox.objects.get()
    settings.EMAIL_BACKEND = "tests.test_alerts.DiesDuringSend"
    with clock.frozen_at(START), pytest.raises(SystemExit):
        services.deliver(row.pk)
    row.refresh_from_db()
    assert row.delivered_at is None and row.claimed_until == START + dt.timedelta(minutes=5)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox.clear()
    with clock.frozen_at(START + dt.timedelta(minutes=2)):
        assert services.deliver(row.pk) is False  # still claimed
        assert services.sweep(clock.now()) == 0
    with clock.frozen_at(START + dt.timedelta(minutes=6)):
        assert services.sweep(clock.now()) == 1  # sends it (task in place)
    assert len(mail.outbox) == 1


def test_a_lost_message_is_found_by_the_sweep(
    olga, eager_celery, django_capture_on_commit_callbacks
):
    flow = order_flow(olga)
    mail.outbox.clear()
    with clock.frozen_at(START), django_capture_on_commit_callbacks(execute=False):
        driver.start_run(flow=flow, input=NO_ORDER, actor="user:olga")
    # The process died before its after-commit enqueue: nothing was sent.
    assert Outbox.objects.get().delivered_at is None and not mail.outbox
    with eager_celery():
        assert services.sweep(START + dt.timedelta(seconds=61)) == 1
    assert len(mail.outbox) == 1


# --- breakers and SLAs -----------------------------------------------------------------


def test_a_breaker_that_opens_is_an_incident_of_the_flow_whose_call_opened_it(
    olga, payments, eager_celery, settings
):
    settings.LEDGERFLOW_BREAKER_REDIS_URL = ""
    settings.LEDGERFLOW_BREAKER_DEFAULTS = {"failures": 3, "window_seconds": 60,
                                            "cooldown_seconds": 30}  # fmt: skip
    from tests.test_breakers import charge_flow, target_of

    flow = charge_flow(olga, payments)
    flows.flow_update(flow=flow, actor=olga, data={"alert_to": ONCALL})
    mail.outbox.clear()
    control(payments, fail_next=3, fail_status=503)
    for n in range(3):
        start(flow, eager_celery, {"order_id": f"f-{n}", "amount": 5})
    target = target_of(payments)
    opened = Event.objects.get(stream=f"breaker:{target}", type="breaker.opened")
    assert Run.objects.get(pk=opened.payload["run_id"]).flow_id == flow.pk
    [incident] = Incident.objects.filter(kind="breaker")
    assert (incident.flow_id, incident.signature) == (flow.pk, f"breaker:{target}")
    breaker_mail = [m for m in mail.outbox if "Breaker opened" in m.subject]
    assert len(breaker_mail) == 1 and target in breaker_mail[0].body
    # Reset by hand and opened again before the flow succeeded: folded in.
    later = START + dt.timedelta(minutes=5)
    breakers.reset(target, actor="user:admin", now=later)
    [run] = Run.objects.filter(flow=flow)[:1]
    for n in range(3):
        breakers.record_call(target, ok=False, node_type="http.request",
                             now=later + dt.timedelta(seconds=n), run_id=run.pk)  # fmt: skip
    incident.refresh_from_db()
    assert incident.events == 2
    assert len([m for m in mail.outbox if "Breaker opened" in m.subject]) == 1


def sla_flow(olga, slug, criticality):
    escalation = {"group": SUPERVISORS, "hours": 8, "then": "keep_waiting"}
    graph = chain(approval_node(sla_hours=4, escalation=escalation))
    return publish(olga, graph, slug=slug, criticality=criticality, alert_to=ONCALL)


def test_an_sla_breach_on_a_critical_flow_is_an_incident(
    olga, eager_celery, django_capture_on_commit_callbacks
):
    reviewer("rita")
    reviewer("sam", SUPERVISORS)
    critical = sla_flow(olga, "payouts", "critical")
    ordinary = sla_flow(olga, "refunds", "high")
    for flow in (critical, ordinary):
        start(flow, eager_celery, {"order_id": "A-7", "amount": 640, "reason": "broken"})
    mail.outbox.clear()
    for hours in (4.1, 12.1, 20.1):  # escalated, breached again, and again
        moment = START + dt.timedelta(hours=hours)
        with clock.frozen_at(moment), django_capture_on_commit_callbacks(execute=True):
            sweep.sweep(moment)
    [incident] = Incident.objects.all()
    assert (incident.flow_id, incident.kind, incident.signature) == (
        critical.pk,
        "sla",
        "sla:review",
    )
    assert incident.events == 2
    alerts = [m for m in mail.outbox if m.to == [ONCALL]]
    assert len(alerts) == 1 and "SLA" in alerts[0].subject


# --- where failures go -------------------------------------------------------------------


def test_blank_alert_to_mails_the_owner(olga, eager_celery):
    olga.email = "olga@example.com"
    olga.save()
    flow = order_flow(olga, alert_to="")
    mail.outbox.clear()
    start(flow, eager_celery, NO_ORDER)
    assert [m.to for m in mail.outbox] == [["olga@example.com"]]


def test_the_inventory_form_edits_and_checks_alert_to(client, olga):
    flow = order_flow(olga, alert_to="")
    login(client, olga)
    url = reverse("flows:edit", args=[flow.slug])
    page = client.get(url)
    form = page.context["form"]
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update({"tags": "", "external_systems": "", "owner": olga.pk})
    bad = client.post(url, {**data, "alert_to": "ops@example.com, not-an-address"})
    assert bad.status_code == 200
    assert "“not-an-address” is not an email address." in bad.content.decode()
    flow.refresh_from_db()
    assert flow.alert_to == ""
    good = client.post(url, {**data, "alert_to": " ops@example.com ;dev@example.com,"})
    assert good.status_code == 302
    flow.refresh_from_db()
    assert flow.alert_to == "ops@example.com, dev@example.com"
    edited = Event.objects.filter(stream=flow.stream, type="flow.edited").last()
    assert edited.payload["changes"]["alert_to"]["to"] == "ops@example.com, dev@example.com"
    detail = client.get(reverse("flows:detail", args=[flow.slug])).content.decode()
    assert "Failures are mailed to" in detail and "ops@example.com, dev@example.com" in detail


# --- pages and the projection ---------------------------------------------------------------


def test_the_dashboard_lists_open_incidents(client, olga, eager_celery):
    flow = order_flow(olga)
    for _ in range(2):
        start(flow, eager_celery, NO_ORDER)
    login(client, olga)
    page = client.get(reverse("dashboard")).content.decode()
    assert 'id="incidents"' in page and "trigger has no field order" in page
    assert '<td class="incident-events">2</td>' in page
    start(flow, eager_celery, GOOD)
    assert "No open incidents." in client.get(reverse("dashboard")).content.decode()


def test_rebuild_projections_derives_the_same_incidents(olga, eager_celery, flaky_mail):
    flow = order_flow(olga)
    start(flow, eager_celery, NO_ORDER)
    start(flow, eager_celery, NO_ORDER)
    start(flow, eager_celery, GOOD)
    flaky_mail.failures = 100
    start(flow, eager_celery, NO_ID)  # its mail still pending
    live = projected_rows()
    assert len(live["Incident"]) == 2 and len(live["Outbox"]) == 2
    call_command("rebuild_projections", stdout=io.StringIO())
    rebuilt = projected_rows()
    for table in ("Incident", "Outbox"):
        assert differences(live[table], rebuilt[table]) == [], table
    assert Outbox.objects.filter(delivered_at__isnull=True).count() == 1


@pytest.mark.django_db(transaction=True)
def test_failures_committing_at_once_open_one_incident(olga, celery_in_thread):
    """Real commits in many threads: the flow's alert stream head is the
    lock under which "is one open?" is asked and answered."""
    from tests.test_breakers import _in_threads

    flow = order_flow(olga)
    mail.outbox.clear()
    run_ids = _in_threads(
        8, lambda: driver.start_run(flow=flow, input=NO_ORDER, actor="user:olga").pk
    )
    assert Run.objects.filter(pk__in=run_ids, status="waiting").count() == 8
    [incident] = incidents(flow)
    assert incident.events == 8
    assert len(mail.outbox) == 1


def test_beat_ticks_the_outbox_sweep(settings):
    from flows.alerts import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["alert-outbox-sweep"]
    assert entry["task"] == tasks.sweep_outbox.name == "flows.alerts.tasks.sweep_outbox"
    assert tasks.deliver_alert.name == services.DELIVER_TASK
