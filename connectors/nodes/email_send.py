"""Send email over SMTP (Django's mail), with the server and login from an
``smtp`` credential. Mail cannot be unsent, so a re-run may send it twice:
the step is unsafe unless the flow declares that the relay deduplicates on
the ``X-Idempotency-Key`` header the step always sends."""

import logging
import smtplib
import socket
from typing import Any

from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend
from django.core.validators import validate_email
from pydantic import Field

from connectors import base
from connectors.credentials.store import credential_for
from connectors.outbound import allowed_hosts, netguard

log = logging.getLogger(__name__)


class EmailConfig(base.StrictConfig):
    credential: str  # an smtp credential's name
    to: list[str] | str  # a list, or one string of comma-separated addresses
    cc: list[str] | str = Field(default_factory=list)
    subject: str
    body: str
    html_body: str | None = None
    from_email: str = ""  # the credential's default sender when empty
    timeout_seconds: float = Field(default=30.0, gt=0, le=120)
    honours_idempotency_key: bool = False


AUTH_PREFERENCE = ("CRAM-MD5", "PLAIN", "LOGIN")


class GuardedSMTP(smtplib.SMTP):
    """Connects to the address netguard checked; STARTTLS still verifies the
    certificate against the host name (smtplib keeps it as ``_host``)."""

    def _get_socket(self, host, port, timeout):
        addresses = netguard.checked_addresses(host, port)
        for ip in addresses[:-1]:
            try:
                return socket.create_connection((ip, port), timeout, self.source_address)
            except ConnectionRefusedError:
                continue
        return socket.create_connection((addresses[-1], port), timeout, self.source_address)

    def login(self, user, password, *, initial_response_ok=True):
        # One mechanism, one attempt: smtplib would retry a refused password
        # with every mechanism the server offers, and each counts as a failed
        # login against the account (lockouts).
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("auth"):
            raise smtplib.SMTPNotSupportedError("AUTH")
        offered = self.esmtp_features["auth"].upper().split()
        method = next((m for m in AUTH_PREFERENCE if m in offered), None)
        if method is None:
            raise smtplib.SMTPNotSupportedError("any login mechanism we know")
        self.user, self.password = user, password
        handler = getattr(self, "auth_" + method.lower().replace("-", "_"))
        return self.auth(method, handler, initial_response_ok=initial_response_ok)


class GuardedEmailBackend(EmailBackend):
    @property
    def connection_class(self):
        return GuardedSMTP


def addresses(value: list[str] | str, field: str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    found = [item.strip() for item in items if item and item.strip()]
    for address in found:
        try:
            validate_email(address)
        except ValidationError:
            raise base.not_sent(f"{field}: {address!r} is not an email address") from None
    return found


def _smtp_error(exc: Exception, *, sending: bool) -> base.ConnectorError:
    """``sending``: the message was being handed over (MAIL, RCPT, DATA), not
    yet the connection, STARTTLS or login. Only then can a lost connection or
    a time-out leave the mail sent without our knowing. A reply code is the
    server refusing: the mail was not accepted."""
    # Server replies are not quoted: a server may echo what the login sent.
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return base.not_sent(f"SMTP login refused ({exc.smtp_code})")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return base.not_sent(
            "SMTP server refused the recipients: " + ", ".join(sorted(exc.recipients))
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        transient = 400 <= exc.smtp_code < 500
        return base.not_sent(f"SMTP server answered {exc.smtp_code}", retryable=transient)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return base.not_sent(f"SMTP server does not support {exc}")
    return base.ConnectorError(f"SMTP connection failed: {type(exc).__name__}", retryable=True,
                          may_have_been_sent=sending)  # fmt: skip


def _close_quietly(backend: EmailBackend) -> None:
    # QUIT after the message was accepted: its failure changes nothing (the
    # mail is sent), and must not turn a sent message into a failed step.
    try:
        backend.close()
    except (smtplib.SMTPException, OSError) as exc:
        log.info("SMTP QUIT failed: %s", type(exc).__name__)


@base.register
class SendEmail(base.Connector):
    key = "email.send"
    label = "Send email"
    category = "Messaging"
    icon = "mail"
    description = (
        "Sends an email through an SMTP credential's server, with the step's idempotency "
        "key in the X-Idempotency-Key header. Mail cannot be unsent: a step whose worker "
        "died mid-send becomes an outcome-unknown dead letter, not a second email."
    )
    side_effect_class = base.SideEffect.UNSAFE
    Config = EmailConfig
    example_config = {
        "credential": "mail-relay",
        "to": "{{ trigger.customer_email }}",
        "subject": "Your order {{ trigger.order_id }} has shipped",
        "body": "Hello, your order is on its way.",
    }
    timeout_seconds = 120.0
    credential_fields = ("credential",)

    def side_effect(self, config: EmailConfig) -> base.SideEffect:
        return (
            base.SideEffect.IDEMPOTENT if config.honours_idempotency_key else base.SideEffect.UNSAFE
        )

    def breaker_target(self, config: EmailConfig) -> str | None:
        # The server is the credential's: one credential, one mail server.
        return base.target_of("", config.credential)

    def execute(self, ctx: base.Context) -> base.Result:
        config: EmailConfig = ctx.config
        smtp = credential_for(config.credential, types={"smtp"})
        sender = config.from_email or smtp.fields.get("from_address", "")
        if not sender:
            raise base.not_sent("no sender: set from_email or the credential's default sender")
        to, cc = addresses(config.to, "to"), addresses(config.cc, "cc")
        if not to:
            raise base.not_sent("to: no recipient")
        message_id = f"<{ctx.idempotency_key}@ledgerflow>"
        backend = self._connection(smtp, config)
        message = EmailMultiAlternatives(
            subject=config.subject,
            body=config.body,
            from_email=sender,
            to=to,
            cc=cc,
            headers={"X-Idempotency-Key": ctx.idempotency_key, "Message-ID": message_id},
            connection=backend,
        )
        if config.html_body:
            message.attach_alternative(config.html_body, "text/html")
        sending = False
        try:
            backend.open()  # connect, STARTTLS, login: nothing is sent yet
            sending = True
            message.send()  # the open connection is used, then closed
        except base.ConnectorError:  # the outbound guard or DNS, before connecting
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise _smtp_error(exc, sending=sending) from None
        finally:
            _close_quietly(backend)
        return base.Result(output={"message_id": message_id, "to": to, "cc": cc})

    @staticmethod
    def _connection(smtp, config: EmailConfig) -> EmailBackend:
        fields: dict[str, Any] = smtp.fields
        # The login goes only where the credential allows.
        allowed_hosts.check(smtp, fields["host"], int(fields["port"]))
        return GuardedEmailBackend(
            host=fields["host"],
            port=int(fields["port"]),
            username=fields.get("username") or "",
            password=smtp.secrets.get("password", ""),
            use_tls=bool(fields.get("starttls")),
            timeout=config.timeout_seconds,
            fail_silently=False,
        )
