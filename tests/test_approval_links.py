"""Approval emails link to the address the platform is served at, read from
LEDGERFLOW_BASE_URL when the mail is sent (not when the process started)."""

import re

from django.core import mail

from runs import driver
from tests.approval_helpers import INPUT, approval_flow, reviewer


def _mailed_link() -> str:
    links = re.findall(r"https?://\S+/approvals/link/\S+", mail.outbox[-1].body)
    assert links, mail.outbox[-1].body
    return links[0]


def test_the_link_follows_the_base_url_setting_at_send_time(
    olga, settings, django_capture_on_commit_callbacks
):
    reviewer("rita")
    flow = approval_flow(olga)
    settings.LEDGERFLOW_BASE_URL = "http://127.0.0.1:9123"
    with django_capture_on_commit_callbacks(execute=True):
        driver.start_run(flow=flow, input=INPUT, actor="user:olga")
    assert _mailed_link().startswith("http://127.0.0.1:9123/approvals/link/")

    settings.LEDGERFLOW_BASE_URL = "https://ledgerflow.example.com/"
    with django_capture_on_commit_callbacks(execute=True):
        driver.start_run(flow=flow, input=INPUT, actor="user:olga")
    link = _mailed_link()
    assert link.startswith("https://ledgerflow.example.com/approvals/link/")
    assert ":8000" not in link
