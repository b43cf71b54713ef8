"""The embedded default (no environment): SQLite plus kombu's filesystem
broker, with real worker processes and the real `make run`."""

import signal
import subprocess
import sys
import urllib.request

import pytest

from tests.processes import (
    ROOT,
    embedded_env,
    free_port,
    group_alive,
    manage,
    sqlite_rows,
    stop_group,
    terminate_group,
    wait_until,
)

pytestmark = pytest.mark.slow


def test_settings_with_no_environment_are_sqlite_and_filesystem_broker(tmp_path):
    env = embedded_env(tmp_path)
    code = (
        "from django.conf import settings as s;"
        "o = s.DATABASES['default']['OPTIONS'];"
        "print(s.DATABASES['default']['ENGINE'], o['transaction_mode'], o['timeout'],"
        " s.CELERY_BROKER_URL, s.CELERY_BROKER_TRANSPORT_OPTIONS['polling_interval'])"
    )
    out = manage(env, "shell", "--no-imports", "-c", code)
    assert out.split() == ["django.db.backends.sqlite3", "IMMEDIATE", "20", "filesystem://", "0.1"]
    manage(env, "migrate", "--noinput")
    assert sqlite_rows(tmp_path, "PRAGMA journal_mode") == [("wal",)]


def test_a_task_sent_through_the_filesystem_broker_is_done_by_two_worker_processes(tmp_path):
    env = embedded_env(tmp_path)
    manage(env, "migrate", "--noinput")
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency", "2",
         "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        send = (
            "from runs.tasks import record_heartbeat\n"
            "for n in range(12): record_heartbeat.delay(f'probe-{n}')"
        )
        manage(env, "shell", "--no-imports", "-c", send)
        wait_until(
            lambda: (
                len(
                    sqlite_rows(
                        tmp_path, "SELECT process FROM runs_heartbeat WHERE process LIKE 'probe-%'"
                    )
                )
                == 12
            ),
            timeout=60,
            what="12 tasks done by the worker",
        )
        output = (tmp_path / "worker.log").read_text()
        assert "ForkPoolWorker-1" in output and "ForkPoolWorker-2" in output, output[-2000:]
    finally:
        terminate_group(worker)
        log.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


def test_make_run_serves_login_and_healthz_then_stops_on_sigterm(tmp_path):
    port = free_port()
    env = embedded_env(
        tmp_path,
        PORT=str(port),
        LEDGERFLOW_HEARTBEAT_SECONDS="2",
        LEDGERFLOW_DEMO_PAYMENTS_PORT=str(free_port()),
    )
    log = open(tmp_path / "run.log", "w")
    run = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(f"{base}/healthz")[0] == 200, timeout=120, what="/healthz")
        status, body = _get(f"{base}/login/")
        assert status == 200 and "Log in to Ledgerflow" in body
        # Beat ticks, the worker executes: both are up and talking.
        wait_until(
            lambda: '"worker"' in _get(f"{base}/readyz")[1], timeout=60, what="worker heartbeat"
        )
        run.send_signal(signal.SIGTERM)  # to make alone: it must stop everything
        run.wait(timeout=30)
        wait_until(lambda: _get(f"{base}/healthz")[0] == 0, timeout=15, what="web to stop")
        # Nothing of the group survives: web, worker (and its pool), beat.
        wait_until(lambda: not group_alive(run.pid), timeout=15, what="all processes to exit")
        output = (tmp_path / "run.log").read_text()
        assert f"http://127.0.0.1:{port}" in output
        for user in ("admin", "operator", "reviewer"):
            assert f"  {user} " in output
    finally:
        stop_group(run)
        log.close()
