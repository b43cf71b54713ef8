"""/metrics in Prometheus format behind a bearer token, its figures read
from the database at scrape time, and /readyz's scheduler check."""

import logging
import os
from collections import Counter

import pytest
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from flows import services
from runs import driver, stepmetrics
from runs.models import Run, Step
from runs.tasks import record_heartbeat
from tests.engine_helpers import chain, publish, transform
from tests.metrics_helpers import by_label, events_by_connector, parse, step_counts
from tests.payments_helpers import charge_node, control

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


def scrape_text(client) -> str:
    response = client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    return response.content.decode()


def test_step_figures_count_every_attempt_the_database_holds(
    client, settings, olga, payments, eager_celery
):
    """Pure steps inline, a side-effecting call in a task, a config that does
    not render, a refused charge: one observation per ``step.started``. The
    multiprocess folder is this test session's, shared by its tests, so the
    figures are compared as the growth over this test."""
    settings.LEDGERFLOW_METRICS_TOKEN = TOKEN
    before = parse(scrape_text(client))
    paid = publish(
        olga,
        chain(transform("a", n="{{ trigger.order_id }}"), charge_node(payments),
              transform("b", done=True)),
        slug="paid",
    )  # fmt: skip
    bad = publish(olga, chain(transform("a", x="{{ trigger.v.deep }}")), slug="bad")
    with eager_celery():
        for n in range(3):
            driver.start_run(flow=paid, input={"order_id": f"m-{n}", "amount": 5}, actor="u")
        control(payments, fail_next=1, fail_status=422)  # refused: not retried
        driver.start_run(flow=paid, input={"order_id": "m-refused", "amount": 5}, actor="u")
        for _ in range(2):
            driver.start_run(flow=bad, input={}, actor="u")
    after = parse(scrape_text(client))
    grown = step_counts(after) - step_counts(before)
    attempts = events_by_connector("step.started")
    assert attempts == Counter({"trigger.manual": 6, "transform": 4 + 3 + 2, "http.request": 4})
    assert grown == attempts
    failed = by_label(after, "ledgerflow_step_attempts_total", "connector", outcome="failed")
    failed -= by_label(before, "ledgerflow_step_attempts_total", "connector", outcome="failed")
    assert failed == events_by_connector("step.attempt_failed")
    assert failed == Counter({"http.request": 1, "transform": 2})
    total = by_label(after, "ledgerflow_step_attempts_total", "connector")
    assert total - by_label(before, "ledgerflow_step_attempts_total", "connector") == attempts
    # Nothing runs now; the call took longer than nothing.
    assert not +by_label(after, "ledgerflow_steps_running", "connector")
    spent = by_label(after, "ledgerflow_step_duration_seconds_sum", "connector")
    assert spent["http.request"] > by_label(before, "ledgerflow_step_duration_seconds_sum",
                                            "connector")["http.request"]  # fmt: skip


def test_a_rolled_back_session_counts_no_attempt(client, settings, olga, eager_celery):
    """An inline step is counted when its session commits: one that rolls
    back (here: the caller's transaction fails) ran it, but holds no attempt."""
    from django.db import transaction

    settings.LEDGERFLOW_METRICS_TOKEN = TOKEN
    flow = publish(olga, chain(transform("a", x=1)), slug="undone")
    before = step_counts(parse(scrape_text(client)))
    with eager_celery():
        with pytest.raises(RuntimeError), transaction.atomic():
            driver.start_run(flow=flow, input={}, actor="u")
            raise RuntimeError("the caller fails after the run started")
    assert not Run.objects.filter(flow=flow).exists()
    assert step_counts(parse(scrape_text(client))) - before == Counter()
    with eager_celery():
        driver.start_run(flow=flow, input={}, actor="u")
    grown = step_counts(parse(scrape_text(client))) - before
    assert grown == events_by_connector() == Counter({"trigger.manual": 1, "transform": 1})


def test_a_failure_of_the_figures_is_logged_and_the_run_goes_on(
    settings, olga, eager_celery, monkeypatch, caplog
):
    settings.LEDGERFLOW_METRICS_TOKEN = TOKEN
    flow = publish(olga, chain(transform("a", x=1)), slug="unmeasured")
    # Metric objects that cannot be used, as a full disk or a broken file
    # would leave them.
    monkeypatch.setattr(stepmetrics, "_metrics", {"broken": object()})
    with caplog.at_level(logging.ERROR, logger="runs.stepmetrics"), eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    run.refresh_from_db()
    assert run.status == "succeeded"
    messages = [r.getMessage() for r in caplog.records if r.name == "runs.stepmetrics"]
    assert "could not count a running step of transform for /metrics" in messages
    assert "could not observe a step of transform for /metrics" in messages


def _session_metrics_dir(env: dict) -> str:
    """The metrics folder a new test session (its settings) chooses."""
    import subprocess
    import sys

    from tests.processes import ROOT

    probe = "import os, django; django.setup(); print(os.environ['PROMETHEUS_MULTIPROC_DIR'])"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_each_test_session_keeps_its_metrics_in_a_folder_of_its_own(tmp_path):
    """Two sessions started alike (one data directory, one folder named in
    the environment) sum no figure of the other's; each removes its own."""
    from pathlib import Path

    from config import settings_test

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "LEDGERFLOW_DATA_DIR": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "shared"),
    }
    first, second = _session_metrics_dir(env), _session_metrics_dir(env)
    assert first != second
    assert not {first, second} & {str(tmp_path / "shared"), str(tmp_path / "metrics")}
    assert not Path(first).exists() and not Path(second).exists()  # removed at exit
    # This session's: where its processes write and its /metrics reads.
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == settings_test.METRICS_DIR
    assert Path(settings_test.METRICS_DIR).is_dir()


def test_the_launcher_empties_the_folder_it_names_for_every_process(tmp_path, monkeypatch):
    from config import launcher

    monkeypatch.setenv("LEDGERFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LEDGERFLOW_DEMO_PAYMENTS_PORT", "8765")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert launcher.platform_env(8000)["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "metrics")
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(elsewhere))
    assert launcher.platform_env(8000)["PROMETHEUS_MULTIPROC_DIR"] == str(elsewhere)
    elsewhere.mkdir()
    for name in ("histogram_4242.db", "gauge_livesum_4242.db", "counter_17.db", "notes.txt"):
        (elsewhere / name).write_text("from an earlier start")
    launcher.fresh_metrics_folder(elsewhere)
    assert sorted(os.listdir(elsewhere)) == ["notes.txt"]


def test_steps_running_in_a_process_killed_outright_stop_counting(client, settings, tmp_path, db):
    """A process killed mid-step (SIGKILL: no shutdown hook runs) leaves its
    live gauge's file; the scrape forgets a process id that names no
    process on this machine."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.processes import ROOT

    settings.LEDGERFLOW_METRICS_TOKEN = TOKEN
    running = ("ledgerflow_steps_running", (("connector", "http.request"),))
    before = parse(scrape_text(client)).get(running, 0)
    hold = (
        "import time, django; django.setup(); from runs import stepmetrics\n"
        "with stepmetrics.running('http.request'):\n"
        "    print('calling', flush=True); time.sleep(120)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings",
           "LEDGERFLOW_DATA_DIR": str(tmp_path)}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", hold], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "calling"
        assert parse(scrape_text(client))[running] == before + 1
        live = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) / f"gauge_livesum_{proc.pid}.db"
        assert live.exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert parse(scrape_text(client)).get(running, 0) == before
        assert not live.exists()
    finally:
        proc.kill()
        proc.wait(timeout=30)
