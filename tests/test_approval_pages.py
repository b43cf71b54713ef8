"""The reviewer's pages: inbox, task, decide, the email link, queues, the
badge, and both live modes (htmx polling, Channels websocket)."""

import json
import re

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core import mail

from approvals import links, services
from approvals.consumers import InboxConsumer
from runs import driver
from runs.ground.models import Event
from runs.models import Run
from tests.approval_helpers import INPUT, approval_flow, reviewer, task_of
from tests.conftest import login


@pytest.fixture
def waiting_run(olga):
    return driver.start_run(flow=approval_flow(olga), input=INPUT, actor="user:olga")


def test_reviewer_sees_the_groups_task_with_a_badge(client, rita, waiting_run):
    page = login(client, rita).get("/approvals/?tab=groups")
    html = page.content.decode()
    assert "Refund 640 EUR for A-7" in html
    assert re.search(r'id="inbox-badge"[^>]*>1</span>', html)


def test_a_claimed_task_moves_to_my_tasks(client, rita, waiting_run):
    login(client, rita).post(f"/approvals/tasks/{task_of(waiting_run).pk}/claim/")
    assert "Refund 640 EUR for A-7" in client.get("/approvals/?tab=mine").content.decode()
    assert "claimed by rita" in client.get("/approvals/?tab=groups").content.decode()


def test_operators_have_no_inbox(client, olga, waiting_run):
    assert login(client, olga).get("/approvals/").status_code == 403


def test_task_page_shows_the_runs_context_and_the_form(client, rita, waiting_run):
    task = task_of(waiting_run)
    html = login(client, rita).get(f"/approvals/tasks/{task.pk}/").content.decode()
    assert "Customer says: arrived broken" in html
    assert "Charge, reserve, confirm." in html  # the flow's inventory purpose
    assert "approval.requested" in html  # the run's history so far
    assert 'name="field_refund_kind"' in html and 'value="approved"' in html


def test_deciding_on_the_page_resumes_the_run(client, rita, waiting_run):
    task = task_of(waiting_run)
    response = login(client, rita).post(
        f"/approvals/tasks/{task.pk}/decide/",
        {"decision": "approved", "comment": "Fine.", "field_refund_kind": "card"},
    )
    assert response.status_code == 302
    assert Run.objects.get(pk=waiting_run.pk).status == "succeeded"
    html = client.get(f"/approvals/tasks/{task.pk}/").content.decode()
    assert "rita</strong> approved this task" in html


def test_a_bad_form_keeps_what_was_typed(client, rita, waiting_run):
    task = task_of(waiting_run)
    response = login(client, rita).post(
        f"/approvals/tasks/{task.pk}/decide/",
        {"decision": "approved", "comment": "Looks right to me", "field_amount_ok": "lots"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "refund_kind: this field is required" in html
    assert "Looks right to me" in html and 'value="lots"' in html
    assert task_of(waiting_run).status == "open"


def test_the_second_reviewer_sees_who_decided(client, rita, ravi, waiting_run):
    task = task_of(waiting_run)
    login(client, rita).post(f"/approvals/tasks/{task.pk}/decide/",
                             {"decision": "rejected", "comment": "No."})  # fmt: skip
    client.logout()
    response = login(client, ravi).post(
        f"/approvals/tasks/{task.pk}/decide/",
        {"decision": "approved", "field_refund_kind": "card"},
        follow=True,
    )
    assert "rita already rejected this task" in response.content.decode()
    assert Event.objects.filter(stream=waiting_run.stream, type="approval.decided").count() == 1


def test_separation_of_duties_on_the_page(client, olga, rita, ravi):
    flow = approval_flow(olga, separation_of_duties=True)
    run = driver.start_run(flow=flow, input=INPUT, actor="user:rita")
    task = task_of(run)
    login(client, rita)
    html = client.get(f"/approvals/tasks/{task.pk}/").content.decode()
    assert "you started this run" in html and 'value="approved"' not in html
    response = client.post(
        f"/approvals/tasks/{task.pk}/decide/",
        {"decision": "approved", "field_refund_kind": "card"},
        follow=True,
    )
    assert "you started this run" in response.content.decode()
    assert task_of(run).status == "open"


def test_a_reviewer_outside_the_queue_cannot_open_the_task(client, olga, adam, ravi):
    flow = approval_flow(olga, assignee_group=None, assignee_user="ravi")
    run = driver.start_run(flow=flow, input=INPUT, actor="user:olga")
    outsider = reviewer("otto")
    assert login(client, outsider).get(f"/approvals/tasks/{task_of(run).pk}/").status_code == 403


# --- the email link -------------------------------------------------------------


def link_path(message) -> str:
    return re.search(r"http://[^/]+(/approvals/link/\S+/)", message.body).group(1)


@pytest.fixture
def mailed_run(olga, rita, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return driver.start_run(flow=approval_flow(olga), input=INPUT, actor="user:olga")


def test_the_email_link_opens_a_confirmation_and_decides_nothing(client, rita, mailed_run):
    path = link_path(mail.outbox[0])
    anonymous = client.get(path)
    assert anonymous.status_code == 302 and anonymous.url.startswith("/login/")
    page = login(client, rita).get(path)
    assert page.status_code == 200
    assert "Nothing is decided until you press a button" in page.content.decode()
    assert task_of(mailed_run).status == "open"
    task = task_of(mailed_run)
    post = {"decision": "approved", "field_refund_kind": "card"}
    assert client.post(f"/approvals/tasks/{task.pk}/decide/", post).status_code == 302
    # Single use: the same decision again is refused by the compare-and-set.
    again = client.post(f"/approvals/tasks/{task.pk}/decide/", post, follow=True)
    assert "rita already approved this task" in again.content.decode()


def test_a_link_is_refused_to_another_user_and_when_tampered(client, ravi, rita, mailed_run):
    path = link_path(next(m for m in mail.outbox if m.to == ["rita@example.com"]))
    refused = login(client, ravi).get(path, follow=True)
    assert "That link was sent to someone else" in refused.content.decode()
    assert "Nothing is decided until" not in refused.content.decode()
    assert client.get(path[:-3] + "xx/").status_code == 400


def test_an_expired_link_is_refused(client, rita, mailed_run, settings):
    settings.LEDGERFLOW_APPROVAL_LINK_HOURS = 0
    token = links.make_token(task_id=task_of(mailed_run).pk, user_id=rita.pk)
    import time

    time.sleep(1.1)
    response = login(client, rita).get(f"/approvals/link/{token}/")
    assert response.status_code == 400
    assert "This link has expired" in response.content.decode()


# --- admins -------------------------------------------------------------------------


def test_admins_see_every_queue_with_its_backlog_and_oldest_task(client, adam, waiting_run):
    html = login(client, adam).get("/approvals/queues/").content.decode()
    assert "Reviewer" in html and "<td>1</td>" in html


def test_admin_reassigns_a_task_to_a_person(client, adam, ravi, waiting_run):
    task = task_of(waiting_run)
    login(client, adam).post(f"/approvals/tasks/{task.pk}/reassign/", {"assignee": "user:ravi"})
    assert task_of(waiting_run).assignee_user == ravi


def test_decided_tasks_stay_findable_with_filters(client, rita, waiting_run):
    services.task_decide(task_id=task_of(waiting_run).pk, user=rita, decision="rejected",
                         comment="duplicate refund")  # fmt: skip
    login(client, rita)
    assert "Refund 640" in client.get("/approvals/?tab=decided&q=duplicate").content.decode()
    assert (
        "Refund 640" not in client.get("/approvals/?tab=decided&decision=approved").content.decode()
    )


# --- live modes ---------------------------------------------------------------------


def test_polling_mode_refreshes_inbox_and_badge_by_htmx(client, rita, settings):
    settings.LEDGERFLOW_LIVE_UPDATES = "polling"
    html = login(client, rita).get("/approvals/").content.decode()
    assert 'hx-trigger="every 3s"' in html
    assert "approvals-live.js" not in html


def test_channels_mode_listens_on_the_websocket(client, rita, settings):
    settings.LEDGERFLOW_LIVE_UPDATES = "channels"
    html = login(client, rita).get("/approvals/").content.decode()
    assert 'hx-trigger="approvals-changed from:body"' in html
    # The socket is opened by a static script: the CSP allows no inline one.
    assert "approvals-live.js" in html
    assert "/ws/approvals/" in client.get("/static/approvals-live.js").getvalue().decode()


def socket(user) -> ApplicationCommunicator:
    """The consumer as the ASGI server would run it (channels.testing needs
    daphne, which we do not serve with)."""
    scope = {"type": "websocket", "path": "/ws/approvals/", "user": user, "headers": []}
    return ApplicationCommunicator(InboxConsumer.as_asgi(), scope)


@pytest.mark.django_db(transaction=True)
def test_the_websocket_announces_a_new_task_over_redis(olga, settings):
    settings.LEDGERFLOW_LIVE_UPDATES = "channels"
    listener = reviewer("rita")
    flow = approval_flow(olga)

    async def scenario():
        from channels.db import database_sync_to_async

        communicator = socket(listener)
        await communicator.send_input({"type": "websocket.connect"})
        assert (await communicator.receive_output(timeout=5))["type"] == "websocket.accept"
        run = await database_sync_to_async(driver.start_run)(
            flow=flow, input=INPUT, actor="user:olga"
        )
        requested = await communicator.receive_output(timeout=5)
        claimer = await database_sync_to_async(reviewer)("ravi")
        task = await database_sync_to_async(task_of)(run)
        await database_sync_to_async(services.task_claim)(task_id=task.pk, user=claimer)
        claimed = await communicator.receive_output(timeout=5)
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(timeout=5)
        return [json.loads(message["text"]) for message in (requested, claimed)]

    assert async_to_sync(scenario)() == [{"event": "approvals-changed"}] * 2


@pytest.mark.django_db(transaction=True)
def test_the_websocket_refuses_anonymous_users():
    async def scenario():
        communicator = socket(AnonymousUser())
        await communicator.send_input({"type": "websocket.connect"})
        return await communicator.receive_output(timeout=5)

    assert async_to_sync(scenario)() == {"type": "websocket.close", "code": 4403}


def test_admin_sets_a_groups_business_hours(client, adam):
    from django.contrib.auth.models import Group

    from approvals.models import BusinessCalendar

    group = Group.objects.get(name="Reviewer")
    login(client, adam)
    hours = "mon 09:00-12:00 13:00-17:00\nfri 09:00-15:00"
    response = client.post(
        "/approvals/calendars/",
        {"group": group.pk, "time_zone": "Europe/Berlin", "opening_hours": hours,
         "holidays": "2026-12-25\n2026-12-24"},
    )  # fmt: skip
    assert response.status_code == 302
    calendar = BusinessCalendar.objects.get(group=group)
    assert calendar.opening_hours == {
        "mon": [["09:00", "12:00"], ["13:00", "17:00"]],
        "fri": [["09:00", "15:00"]],
    }
    assert calendar.holidays == ["2026-12-24", "2026-12-25"]
    assert "mon 09:00-12:00 13:00-17:00" in client.get("/approvals/calendars/").content.decode()


def test_a_bad_calendar_says_what_is_wrong_and_keeps_the_input(client, adam):
    from django.contrib.auth.models import Group

    group = Group.objects.get(name="Reviewer")
    response = login(client, adam).post(
        "/approvals/calendars/",
        {"group": group.pk, "time_zone": "Mars/Olympus", "opening_hours": "mon 09:00-17:00"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "unknown time zone" in html and "Mars/Olympus" in html
