"""The canary: plant secrets in credentials, run flows that use them against
remotes that echo them back and fail, then search everything Ledgerflow
keeps or shows (every event's payload and hashed body, every log line,
every page an operator or admin can open) for the secrets in plain, base64
and URL-encoded forms. Nothing may be found."""

import base64
import json
import logging

import pytest
from django.urls import reverse

from connectors.credentials import store as credentials
from connectors.credentials.models import Credential
from runs import driver, sweeper
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run, Step
from tests.conftest import SMTP_USER, login
from tests.engine_helpers import chain, publish
from tests.localserver import Reply

TOKEN = "canary-T0ken/with+odd=chars&more"
MAIL_PASSWORD = "canary-Mail-Pa55/word?"


# Written out by hand, not derived from runs.redaction: the oracle must not
# share the code it checks. A secret's distinctive start catches it plain,
# cut short, or escaped (HTML turns its "&" into "&amp;", a URL its "/" into
# "%2F"); the rest are encodings that do not contain it. Standard and
# URL-safe base64 agree for these two values.
SECRET_STARTS = {"canary-T0ken", "canary-Mail-Pa55"}
IN_BASE64 = {
    "Y2FuYXJ5LVQwa2VuL3dpdGgrb2RkPWNoYXJzJm1vcmU",  # TOKEN, "=" or not
    "Y2FuYXJ5LU1haWwtUGE1NS93b3JkPw",  # MAIL_PASSWORD, "=="-padded or not
    "AG1haWxlcgBjYW5hcnktTWFpbC1QYTU1L3dvcmQ/",  # SMTP AUTH PLAIN: "\0mailer\0" + it
}
FORBIDDEN = SECRET_STARTS | IN_BASE64


def leaks(text: str) -> set[str]:
    return {form for form in FORBIDDEN if form in text}


def echo_authorization(status):
    def route(seen):
        return Reply(status, {"you_sent": seen.headers.get("authorization", ""), "path": seen.path})

    return route


@pytest.fixture
def planted(olga, local_server, smtp_server):
    server = local_server({"/echo": echo_authorization(200), "/fail": echo_authorization(500)})
    credentials.credential_create(actor=olga, name="canary-api", type="bearer", owner=olga,
                                  fields={}, secrets={"token": TOKEN},
                                  allowed_hosts=["127.0.0.1"])  # fmt: skip
    credentials.credential_create(
        actor=olga, name="canary-mail", type="smtp", owner=olga,
        fields={"host": smtp_server.host, "port": smtp_server.port, "username": SMTP_USER,
                "starttls": False, "from_address": "ops@ledgerflow.test"},
        secrets={"password": MAIL_PASSWORD},  # not the server's password: login fails
        allowed_hosts=[f"{smtp_server.host}:{smtp_server.port}"],
    )  # fmt: skip
    return server


def run_flows(olga, server, eager_celery) -> list[Run]:
    api = publish(
        olga,
        chain(
            {"id": "look", "type": "http.request",
             "config": {"url": server.url + "/echo", "credential": "canary-api"}},
            {"id": "push", "type": "http.request",
             "retry": {"max_attempts": 2, "initial_seconds": 0},
             "config": {"method": "POST", "url": server.url + "/fail",
                        "credential": "canary-api",
                        "json_body": {"seen": "{{ steps.look.output.body.you_sent }}"}}},
        ),
        slug="canary-api",
    )  # fmt: skip
    mail = publish(
        olga,
        chain({"id": "notify", "type": "email.send", "retry": {"max_attempts": 1},
               "config": {"credential": "canary-mail", "to": "ada@example.test",
                          "subject": "Canary", "body": "hello"}}),
        slug="canary-mail",
    )  # fmt: skip
    with eager_celery():
        runs = [
            driver.start_run(flow=api, input={}, actor="user:olga"),
            driver.start_run(flow=mail, input={}, actor="user:olga"),
        ]
    return [Run.objects.get(pk=run.pk) for run in runs]


def test_no_secret_reaches_events_logs_or_pages(
    olga, adam, client, planted, smtp_server, eager_celery, caplog
):
    caplog.set_level(logging.DEBUG)
    api_run, mail_run = run_flows(olga, planted, eager_celery)
    with eager_celery():
        sweeper.sweep(clock.now())  # the retry of "push" is due at once
    # The remotes did see the secrets, and echoed them: the test is not vacuous.
    assert any(TOKEN in seen.headers.get("authorization", "") for seen in planted.seen)
    assert any("you_sent" in json.dumps(s.output) for s in Step.objects.filter(node_id="look"))
    assert "[redacted]" in json.dumps(Step.objects.get(run=api_run, node_id="look").output)
    push = Step.objects.get(run=api_run, node_id="push")
    notify = Step.objects.get(run=mail_run, node_id="notify")
    assert push.status == "dead_lettered" and "answered 500" in push.error
    assert notify.status == "dead_lettered" and notify.error == "SMTP login refused (535)"
    driver.discard_dead_letter(mail_run.pk, "notify", actor="user:olga", reason="canary")

    for event in Event.objects.all():
        text = event.body + json.dumps(event.payload) + event.actor
        assert not leaks(text), f"{event.stream}#{event.seq} {event.type}"

    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert not leaks(text), f"log {record.name}: {record.getMessage()[:80]}"

    pages = [
        reverse("flows:detail", args=["canary-api"]),
        reverse("flows:detail", args=["canary-mail"]),
        reverse("flows:graph", args=["canary-api"]),
        reverse("runs:detail", args=[api_run.pk]),
        reverse("runs:detail", args=[mail_run.pk]),
        reverse("runs:dead_letters"),
        reverse("credentials:list"),
        *(reverse("credentials:edit", args=[c.pk]) for c in Credential.objects.all()),
    ]
    for user, extra in ((olga, []), (adam, [reverse("audit_log")])):
        login(client, user)
        for url in pages + extra:
            response = client.get(url)
            assert response.status_code == 200, url
            assert not leaks(response.content.decode()), url


def test_the_oracle_names_the_planted_secrets():
    decoded = {base64.b64decode(form + "=" * (-len(form) % 4)) for form in IN_BASE64}
    login_plain = f"\0{SMTP_USER}\0{MAIL_PASSWORD}".encode()
    assert decoded == {TOKEN.encode(), MAIL_PASSWORD.encode(), login_plain}
    for secret in (TOKEN, MAIL_PASSWORD):
        assert any(secret.startswith(start) for start in SECRET_STARTS)
