"""/metrics in Prometheus format behind a bearer token, its figures read
from the database at scrape time, and /readyz's scheduler check."""

import pytest
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from flows import services
from runs import driver
from runs.models import Run, Step
from runs.tasks import record_heartbeat
from tests.engine_helpers import chain, publish, transform

TOKEN = "scrape-me-7f3a"
URL = reverse("metrics")


def scrape(client) -> dict:
    response = client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_are_off_until_a_token_is_set(client, settings):
    settings.LEDGERFLOW_METRICS_TOKEN = ""
    response = client.get(URL)
    assert response.status_code == 404
    assert b"set LEDGERFLOW_METRICS_TOKEN" in response.content


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_metrics_refuse_a_missing_or_wrong_token(client, settings, header):
    settings.LEDGERFLOW_METRICS_TOKEN = TOKEN
    headers = {"Authorization": header} if header else {}
    response = client.get(URL, headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_logged_in_admin_without_the_token_is_refused_too(client, settings, adam):
    settings.LEDGERFLOW_METRICS_TOKEN = TOKEN
    client.force_login(adam)
    assert client.get(URL).status_code == 401


def test_run_and_dead_letter_figures_match_the_database(client, settings, olga, eager_celery):
    settings.LEDGERFLOW_METRICS_TOKEN = TOKEN
    good = publish(olga, chain(transform("a", x="{{ trigger.n }}")), slug="good-flow")
    bad = publish(olga, chain(transform("a", x="{{ trigger.v.deep }}")), slug="bad-flow")
    with eager_celery():
        for n in range(3):
            driver.start_run(flow=good, input={"n": n}, actor="webhook")
        for _ in range(2):
            driver.start_run(flow=bad, input={}, actor="webhook")
    samples = scrape(client)
    for flow in ("good-flow", "bad-flow"):
        for status in ("succeeded", "running"):
            expected = Run.objects.filter(flow__slug=flow, status=status).count()
            got = samples.get(("ledgerflow_runs", (("flow", flow), ("status", status))), 0)
            assert got == expected, (flow, status)
    assert samples[("ledgerflow_runs", (("flow", "good-flow"), ("status", "succeeded")))] == 3
    letters = Step.objects.filter(status="dead_lettered", run__flow__slug="bad-flow").count()
    assert letters == 2
    assert samples[("ledgerflow_dead_letters", (("flow", "bad-flow"),))] == letters
    assert samples[("ledgerflow_approvals_waiting", ())] == 0
    assert ("ledgerflow_celery_queue_depth", ()) in samples
    # A test run of a draft is the editor's: it is not counted.
    from flows import testruns

    services.flow_save_draft(
        flow=bad, actor=olga, graph=chain(transform("a", x="{{ trigger.v.deep }}"))
    )
    bad.refresh_from_db()
    with eager_celery():
        testruns.test_run_start(flow=bad, actor="user:olga", input={})
    assert Run.objects.filter(flow=bad, is_test=True).count() == 1
    again = scrape(client)
    assert again[("ledgerflow_dead_letters", (("flow", "bad-flow"),))] == letters
    # A figure read at scrape time follows the database at once.
    with eager_celery():
        driver.start_run(flow=good, input={"n": 9}, actor="webhook")
    later = scrape(client)
    assert later[("ledgerflow_runs", (("flow", "good-flow"), ("status", "succeeded")))] == 4


def test_readyz_wants_a_fresh_scheduler_heartbeat(client, db):
    response = client.get(reverse("readyz"))
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["scheduler"].startswith("no heartbeat from the scheduler")
    assert body["checks"]["database"] == body["checks"]["broker"] == "ok"
    record_heartbeat("beat")  # what beat sends and a worker runs
    response = client.get(reverse("readyz"))
    assert response.status_code == 200, response.json()
    assert response.json()["heartbeats"]["beat"]["fresh"] is True
