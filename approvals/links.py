"""Signed, expiring links to decide a task from an email.

The token signs (task, assignee, nonce) with a salt of its own, so it is
useless as any other signed value. It only opens a confirmation page after
login: mail scanners fetch links, so a GET never decides; the decision is a
CSRF-protected POST through the same compare-and-set as any decision, which
is what makes the link single use.
"""

import secrets

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "ledgerflow.approvals.decide-link"


class BadLink(Exception):
    pass


def make_token(*, task_id: int, user_id: int) -> str:
    signer = signing.TimestampSigner(salt=SALT)
    return signer.sign_object({"t": task_id, "u": user_id, "n": secrets.token_urlsafe(8)})


def read_token(token: str) -> tuple[int, int]:
    """(task id, user id), or BadLink saying why not."""
    max_age = settings.LEDGERFLOW_APPROVAL_LINK_HOURS * 3600
    try:
        value = signing.TimestampSigner(salt=SALT).unsign_object(token, max_age=max_age)
    except signing.SignatureExpired:
        raise BadLink("This link has expired. Open the task from your inbox instead.") from None
    except signing.BadSignature:
        raise BadLink("This link is not valid. Open the task from your inbox instead.") from None
    return int(value["t"]), int(value["u"])


def absolute_url(token: str) -> str:
    return settings.LEDGERFLOW_BASE_URL.rstrip("/") + reverse("approvals:link", args=[token])
