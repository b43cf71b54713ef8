"""The audit page in a real browser: a broken chain stands out in red, an
event opens to its payload and diff, and nothing breaks the CSP."""

import pytest
from django.db import connection

from runs.chain_checks import verify_chains
from runs.ground.eventstore import append
from runs.models import Event
from tests.browser import browser, log_in, screenshot  # noqa: F401
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_broken_chain_is_red_on_the_audit_page(browser, live_server, adam):  # noqa: F811
    for n in range(3):
        append("flow:1", "flow.edited", {"changes": {"runbook": {"from": n, "to": n + 1}}},
               actor="user:olga")  # fmt: skip
    target = Event.objects.get(stream="flow:1", seq=2)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE runs_event DISABLE TRIGGER runs_event_no_update_or_delete")
        cursor.execute("UPDATE runs_event SET actor = 'user:eve' WHERE id = %s", [target.pk])
        cursor.execute("ALTER TABLE runs_event ENABLE TRIGGER runs_event_no_update_or_delete")
    verify_chains()

    page = log_in(browser, live_server, "adam", PASSWORD)
    page.goto(f"{live_server.url}/audit/?stream=flow:1")
    alert = page.locator("[data-testid=chain-alerts]")
    assert "broken at seq 2" in alert.inner_text()
    assert alert.evaluate("el => getComputedStyle(el).color") == "rgb(180, 35, 24)"  # --bad
    row = page.locator(f"tr[data-event='{target.pk}']")
    assert "chain-broken" in row.get_attribute("class")
    row.locator("summary").click()
    assert row.locator("[data-testid=audit-diff]").is_visible()
    screenshot(page, "audit-broken-chain")
