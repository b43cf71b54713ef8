"""The demo connectors (payments, inventory, CPU work) are registered only
with ``LEDGERFLOW_DEMO`` on. A flow that names one where it is off still
shows its pages, says the connector is not installed, and starts no run."""

import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
from django.core.management import CommandError, call_command

from connectors import base as connectors
from flows import services
from runs import driver
from runs.models import Run
from tests.conftest import login
from tests.engine_helpers import chain, publish

DEMO = ("payments.charge", "inventory.reserve", "cpu.work")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def registered_with(demo: str) -> set[str]:
    """The registry of a fresh process whose environment sets LEDGERFLOW_DEMO."""
    script = (
        "import django; django.setup()\n"
        "from connectors.base import all_connectors\n"
        "print(' '.join(all_connectors()))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "LEDGERFLOW_DEMO": demo}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return set(result.stdout.split())


def test_the_setting_decides_whether_the_demo_connectors_are_registered():
    off, on = registered_with("0"), registered_with("1")
    assert not off & set(DEMO)
    assert set(DEMO) <= on
    assert "http.request" in off and on - off == set(DEMO)


def test_seed_demo_refuses_without_the_demo_connectors(settings, db):
    settings.LEDGERFLOW_DEMO = False
    with pytest.raises(CommandError, match="LEDGERFLOW_DEMO=1"):
        call_command("seed_demo")


@contextmanager
def uninstalled(*keys: str):
    """The registry of an installation without these connectors (what
    LEDGERFLOW_DEMO off gives the demo ones), for this block only."""
    removed = {key: connectors._registry.pop(key) for key in keys}
    try:
        yield
    finally:
        connectors._registry.update(removed)


def charge(api_url: str) -> dict:
    return {"id": "charge", "type": "payments.charge",
            "config": {"base_url": api_url, "order_id": "{{ trigger.order_id }}",
                       "amount": "{{ trigger.amount }}"}}  # fmt: skip


@pytest.fixture
def charged(olga, payments, eager_celery):
    """A published, active flow that charges through the demo connector, and
    a run of it that did, made while the connector was installed."""
    flow = publish(olga, chain(charge(payments.url)), slug="charge-once")
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "A-1", "amount": 5}, actor="u")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return flow, run


def test_a_flow_naming_an_uninstalled_connector_shows_its_pages(client, olga, charged):
    flow, run = charged
    login(client, olga)
    with uninstalled(*DEMO):
        detail = client.get(f"/flows/{flow.slug}/")
        editor = client.get(f"/flows/{flow.slug}/editor/")
        run_page = client.get(f"/runs/{run.pk}/")
        draft = client.get(f"/api/v1/flows/{flow.slug}/draft")
        catalogue = client.get("/api/v1/connectors")
    assert detail.status_code == editor.status_code == run_page.status_code == 200
    refusal = "uses “payments.charge”, not installed here; it starts no runs."
    assert refusal in detail.content.decode() and refusal in editor.content.decode()
    assert 'id="start-run"' not in detail.content.decode()  # no start button
    assert "charge" in run_page.content.decode()
    assert draft.status_code == 200
    assert "payments.charge" in {node["type"] for node in draft.json()["graph"]["nodes"]}
    # The editor's catalogue lacks it, so the node shows "not installed".
    assert "payments.charge" not in {entry["key"] for entry in catalogue.json()}
    assert client.get(f"/flows/{flow.slug}/").status_code == 200  # installed again


def test_a_flow_naming_an_uninstalled_connector_refuses_to_start(client, olga, charged):
    flow, _ = charged
    runs_before = Run.objects.count()
    with uninstalled(*DEMO):
        with pytest.raises(driver.StartRefused, match="“payments.charge”, not installed here"):
            driver.start_run(flow=flow, input={"order_id": "A-2", "amount": 5}, actor="u")
        page = login(client, olga).post(f"/flows/{flow.slug}/runs/", {"input": "{}"}, follow=True)
    assert page.status_code == 200
    assert "not installed here" in page.content.decode()
    assert Run.objects.count() == runs_before


def test_a_draft_naming_an_uninstalled_connector_is_not_published(olga, payments):
    flow = publish(olga, chain(charge(payments.url)), slug="charge-twice")
    services.flow_save_draft(flow=flow, actor=olga, graph=chain(charge(payments.url)))
    with uninstalled(*DEMO):
        with pytest.raises(services.InvalidDraft, match="unknown connector type “payments.charge”"):
            services.flow_publish(flow=flow, actor=olga)
    flow.refresh_from_db()
    assert flow.published_version == 1
