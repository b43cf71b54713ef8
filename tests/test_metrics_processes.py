"""/metrics across real processes: two web processes (uvicorn) and two Celery
workers on PostgreSQL and Redis, sharing one multiprocess folder. Runs start
by webhook on both web processes (their pure steps run there, inline); the
charge runs on the workers, some attempts refused and retried. Either web
process then answers the same figures, and they match the database."""

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django.urls import reverse
from prometheus_client.multiprocess import MultiProcessCollector

from runs.models import Run, Step
from tests.engine_helpers import transform
from tests.localserver import free_port
from tests.metrics_helpers import STEP_HISTOGRAM, by_label, events_by_connector, parse, step_counts
from tests.payments_helpers import control
from tests.processes import ROOT, parent_of, platform_pids, terminate_group, wait_until
from tests.trigger_helpers import token_of, triggered_flow, webhook

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOKEN = "scrape-the-fleet-41"
RUNS = 6
REFUSED = 2  # charges answered 503 and retried: attempts beyond one per run


def charge(payments) -> dict:
    return {
        "id": "charge",
        "type": "http.request",
        "config": {
            "method": "POST",
            "url": f"{payments.url}/charges",
            "json_body": {"order_id": "{{ trigger.body.order_id }}", "amount": 3},
            "honours_idempotency_key": True,
            "timeout_seconds": 5,
        },
        "retry": {"max_attempts": 4, "initial_seconds": 0.2, "jitter": 0},
    }


def platform_env(tmp_path: Path, payments) -> dict[str, str]:
    from django.conf import settings

    env = dict(os.environ)
    env.pop("CELERY_BROKER_URL", None)
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="config.settings",
        LEDGERFLOW_DATA_DIR=str(tmp_path),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        LEDGERFLOW_METRICS_TOKEN=TOKEN,
        LEDGERFLOW_OUTBOUND_ALLOWLIST=payments.url.removeprefix("http://"),
        PYTHONUNBUFFERED="1",
    )
    (tmp_path / "metrics").mkdir()
    return env


def start(env: dict, log: Path, *command: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *command], cwd=ROOT, env={**env, **extra},
        stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def scrape(port: int) -> dict:
    response = httpx.get(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text
    return parse(response.text)


def observed_by(folder: Path, pids: list[int], kind: str = "histogram") -> Counter:
    """The step histogram's count by connector in the files of ``pids``."""
    files = [str(folder / f"{kind}_{pid}.db") for pid in pids]
    counts: Counter = Counter()
    for metric in MultiProcessCollector.merge([f for f in files if os.path.exists(f)]):
        for sample in metric.samples:
            if sample.name == f"{STEP_HISTOGRAM}_count":
                counts[sample.labels["connector"]] += sample.value
    return counts


def step_family(samples: dict) -> dict:
    return {key: value for key, value in samples.items() if key[0].startswith(STEP_HISTOGRAM)}


def test_two_web_processes_answer_the_figures_of_two_workers(tmp_path, olga, payments):
    env = platform_env(tmp_path, payments)
    folder = tmp_path / "metrics"
    flow = triggered_flow(
        olga, webhook(),
        transform("prepare", order="{{ trigger.body.order_id }}"),
        charge(payments),
        transform("confirm", charge="{{ steps.charge.output.body.id }}"),
        slug="metered",
    )  # fmt: skip
    hook = reverse("triggers:webhook", kwargs={"token": token_of(flow)})
    # Each charge takes a while, so both workers get some; the first two
    # are refused (503, retried).
    control(payments, latency_ms=[150, 250], fail_next=REFUSED, fail_status=503)
    ports = [free_port(), free_port()]
    webs = [
        start(env, tmp_path / f"web{n}.log", "uvicorn", "config.asgi:application",
              "--host", "127.0.0.1", "--port", str(port), "--lifespan", "on",
              LEDGERFLOW_PROCESS="web")
        for n, port in enumerate(ports)
    ]  # fmt: skip
    workers = [
        start(env, tmp_path / f"worker{n}.log", "celery", "-A", "config", "worker",
              "--concurrency", "1", "--hostname", f"w{n}@%h", "--loglevel", "INFO",
              "--without-mingle", "--without-gossip")
        for n in range(2)
    ]  # fmt: skip
    try:
        for url in (f"http://127.0.0.1:{port}/healthz" for port in ports):
            wait_until(lambda url=url: _get(url) == 200, timeout=60, what=url)
        for log in (tmp_path / f"worker{n}.log" for n in range(2)):
            wait_until(lambda log=log: "ready." in log.read_text(), timeout=60, what=log.name)
        for n in range(RUNS):
            response = httpx.post(
                f"http://127.0.0.1:{ports[n % 2]}{hook}", json={"order_id": f"fleet-{n}"}
            )
            assert response.status_code == 202, response.text
        wait_until(
            lambda: Run.objects.filter(flow=flow, status="succeeded").count() == RUNS,
            timeout=120, what=f"{RUNS} runs to succeed",
        )  # fmt: skip

        # Every attempt the database holds, observed once, in one process or
        # another, and summed alike by either web process.
        attempts = events_by_connector("step.started")
        assert attempts == Counter(
            {"trigger.webhook": RUNS, "transform": 2 * RUNS, "http.request": RUNS + REFUSED}
        )
        # A worker's last inline step is observed just after its commit,
        # which the run's status may show a moment sooner.
        settled = wait_until(
            lambda: step_counts(scrape(ports[0])) == attempts, timeout=10, interval=0.5,
            what=f"{attempts} in /metrics",
        )  # fmt: skip
        assert settled
        first, second = scrape(ports[0]), scrape(ports[1])
        assert step_counts(first) == attempts
        assert step_family(first) == step_family(second)
        failed = by_label(first, "ledgerflow_step_attempts_total", "connector", outcome="failed")
        assert failed == events_by_connector("step.attempt_failed") == {"http.request": REFUSED}
        assert not +by_label(first, "ledgerflow_steps_running", "connector")
        # Where they were observed: the webhooks' pure steps in the web
        # processes, every charge in a worker's pool child, and both
        # workers charged.
        web_pids = [web.pid for web in webs]
        assert observed_by(folder, web_pids)["trigger.webhook"] == RUNS
        children = {}
        for worker in workers:
            children[worker.pid] = [
                pid for pid in platform_pids(tmp_path) if parent_of(pid) == worker.pid
            ]
            assert len(children[worker.pid]) == 1, children
            assert observed_by(folder, children[worker.pid])["http.request"] > 0
        pool = [pid for pids in children.values() for pid in pids]
        assert observed_by(folder, pool)["http.request"] == RUNS + REFUSED
        # The gauges read from the database answer the same from both.
        for (flow_slug, status), n in _runs_in_db().items():
            key = ("ledgerflow_runs", (("flow", flow_slug), ("status", status)))
            assert first[key] == second[key] == n
        assert first[("ledgerflow_runs", (("flow", "metered"), ("status", "succeeded")))] == RUNS
        letters = Step.objects.filter(status="dead_lettered").count()
        assert sum(by_label(first, "ledgerflow_dead_letters", "flow").values()) == letters == 0
        for name in ("ledgerflow_approvals_waiting", "ledgerflow_sweep_expired_leases"):
            assert first[(name, ())] == second[(name, ())] == 0

        # Processes exit: their live gauges' files go (the running-steps
        # gauge of a dead process is not summed), their totals stay.
        live = [folder / f"gauge_livesum_{pid}.db" for pid in [*pool, *web_pids]]
        assert all(path.exists() for path in live), sorted(os.listdir(folder))
        for worker in workers:
            terminate_group(worker)
        os.kill(webs[0].pid, signal.SIGTERM)
        webs[0].wait(timeout=30)
        gone = [path.name for path in live if not path.exists()]
        assert sorted(gone) == sorted(path.name for path in live[:-1]), sorted(os.listdir(folder))
        for pid in [*pool, web_pids[0]]:
            assert (folder / f"histogram_{pid}.db").exists()
        after = scrape(ports[1])
        assert step_family(after) == step_family(second)
        assert step_counts(after) == events_by_connector("step.started")
    finally:
        for proc in [*webs, *workers]:
            terminate_group(proc)


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _runs_in_db() -> dict[tuple[str, str], int]:
    counted: Counter = Counter()
    for slug, status in Run.objects.filter(is_test=False).values_list("flow__slug", "status"):
        counted[(slug, status)] += 1
    return counted
