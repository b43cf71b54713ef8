"""Send email against a real SMTP server (aiosmtpd) on a local port."""

import email
import email.policy

import pytest

from connectors import base as connectors
from connectors.base import ConnectorError, SideEffect
from connectors.credentials import store as credentials
from connectors.nodes.email_send import EmailConfig
from connectors.outbound import netguard
from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.connector_helpers import run_connector


def smtp_credential(sink, name="mail", password=SMTP_PASSWORD, host=None):
    return credentials.credential_create(
        actor="system:test", name=name, type="smtp",
        fields={"host": host or sink.host, "port": sink.port, "username": SMTP_USER,
                "starttls": False, "from_address": "ops@ledgerflow.test"},
        secrets={"password": password}, allowed_hosts=[f"{host or sink.host}:{sink.port}"],
    )  # fmt: skip


def received(sink, index=0):
    envelope = sink.messages[index]
    return envelope, email.message_from_bytes(envelope.content, policy=email.policy.default)


def test_a_message_reaches_the_server_with_its_idempotency_key(db, smtp_server):
    smtp_credential(smtp_server)
    result = run_connector(
        "email.send",
        {"credential": "mail", "to": "ada@example.test, bob@example.test",
         "cc": ["carol@example.test"], "subject": "Order A-1 shipped",
         "body": "Your order is on its way.", "html_body": "<p>Your order is on its way.</p>"},
    )  # fmt: skip
    envelope, message = received(smtp_server)
    assert smtp_server.logins == [SMTP_USER]
    assert envelope.mail_from == "ops@ledgerflow.test"
    assert sorted(envelope.rcpt_tos) == [
        "ada@example.test",
        "bob@example.test",
        "carol@example.test",
    ]
    assert message["Subject"] == "Order A-1 shipped"
    assert message["X-Idempotency-Key"] == "idem-key-1"
    assert message["Message-ID"] == "<idem-key-1@ledgerflow>"
    assert message.get_body(("plain",)).get_content().strip() == "Your order is on its way."
    assert message.get_body(("html",)).get_content().strip() == "<p>Your order is on its way.</p>"
    assert result.output == {
        "message_id": "<idem-key-1@ledgerflow>",
        "to": ["ada@example.test", "bob@example.test"],
        "cc": ["carol@example.test"],
    }


def test_a_refused_login_fails_without_retry_and_without_quoting_the_server(db, smtp_server):
    smtp_credential(smtp_server, password="wrong-password-1")
    with pytest.raises(ConnectorError) as failed:
        run_connector("email.send", {"credential": "mail", "to": "ada@example.test",
                                     "subject": "s", "body": "b"})  # fmt: skip
    assert str(failed.value) == "SMTP login refused (535)"
    assert failed.value.retryable is False
    assert smtp_server.messages == []


def test_an_smtp_host_off_the_allowlist_is_refused_before_connecting(db, smtp_server, settings):
    smtp_credential(smtp_server)
    settings.LEDGERFLOW_OUTBOUND_ALLOWLIST = []
    with pytest.raises(netguard.OutboundRefused):
        run_connector("email.send", {"credential": "mail", "to": "ada@example.test",
                                     "subject": "s", "body": "b"})  # fmt: skip
    assert smtp_server.logins == [] and smtp_server.messages == []


def test_a_bad_address_fails_without_retry(db, smtp_server):
    smtp_credential(smtp_server)
    with pytest.raises(ConnectorError, match="'not-an-address' is not an email address"):
        run_connector("email.send", {"credential": "mail", "to": "not-an-address",
                                     "subject": "s", "body": "b"})  # fmt: skip


def test_mail_is_unsafe_to_resend_unless_the_relay_deduplicates():
    connector = connectors.get("email.send")
    config = {"credential": "m", "to": "a@b.test", "subject": "s", "body": "b"}
    assert connector.side_effect(EmailConfig.model_validate(config)) == SideEffect.UNSAFE
    declared = EmailConfig.model_validate({**config, "honours_idempotency_key": True})
    assert connector.side_effect(declared) == SideEffect.IDEMPOTENT
    with pytest.raises(ValueError):
        EmailConfig.model_validate({**config, "password": "inline secrets are refused"})


def test_a_flow_sends_mail_rendered_from_its_trigger(olga, smtp_server, eager_celery):
    from runs import driver
    from runs.models import Step
    from tests.engine_helpers import chain, publish

    smtp_credential(smtp_server)
    notify = {
        "id": "notify", "type": "email.send",
        "config": {"credential": "mail", "to": "{{ trigger.email }}",
                   "subject": "Order {{ trigger.order_id }} shipped",
                   "body": "Hello {{ trigger.name }}, it is on its way."},
    }  # fmt: skip
    flow = publish(olga, chain(notify), slug="ship-mail")
    with eager_celery():
        run = driver.start_run(
            flow=flow, input={"email": "ada@example.test", "order_id": "A-7", "name": "Ada"},
            actor="user:olga",
        )  # fmt: skip
    step = Step.objects.get(run=run, node_id="notify")
    assert step.status == "succeeded", step.error
    envelope, message = received(smtp_server)
    assert envelope.rcpt_tos == ["ada@example.test"]
    assert message["Subject"] == "Order A-7 shipped"
    assert message["X-Idempotency-Key"] == step.idempotency_key
    assert message.get_body(("plain",)).get_content().strip() == "Hello Ada, it is on its way."
