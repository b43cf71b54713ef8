"""The embedded default (no environment): SQLite plus the filesystem broker
(config/broker.py), with real worker processes and the real `make run`
(supervisord, platform/supervisord.conf)."""

import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.localserver import free_port
from tests.processes import (
    ROOT,
    embedded_env,
    group_alive,
    kill_platform,
    manage,
    parent_of,
    platform_pids,
    sqlite_rows,
    start_worker,
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
        " s.CELERY_BROKER_URL, s.CELERY_BROKER_TRANSPORT,"
        " s.CELERY_BROKER_TRANSPORT_OPTIONS['polling_interval'],"
        # No layer shared between processes: live pages (runs, inbox) poll.
        " s.LEDGERFLOW_LIVE_UPDATES, s.CHANNEL_LAYERS['default']['BACKEND'])"
    )
    out = manage(env, "shell", "--no-imports", "-c", code)
    assert out.split() == [
        "config.sqlite", "IMMEDIATE", "20", "filesystem://",
        "config.broker:Transport", "0.1", "polling", "channels.layers.InMemoryChannelLayer",
    ]  # fmt: skip
    manage(env, "migrate", "--noinput")
    assert sqlite_rows(tmp_path, "PRAGMA journal_mode") == [("wal",)]


def test_a_task_sent_through_the_filesystem_broker_is_done_by_two_worker_processes(tmp_path):
    env = embedded_env(tmp_path)
    manage(env, "migrate", "--noinput")
    worker = start_worker(env, tmp_path / "worker.log", concurrency=2)
    try:
        # Heartbeats are counted in the database; beat's routine ticks stay
        # out of the INFO log, so the pool processes are seen working on
        # release_queued probes (a flow that does not exist: nothing to do).
        send = (
            "from runs.tasks import record_heartbeat, release_queued\n"
            "for n in range(12): record_heartbeat.delay(f'probe-{n}')\n"
            "for n in range(12): release_queued.delay(0, f'probe-{n}')"
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

        def both_pool_processes_worked() -> bool:
            output = (tmp_path / "worker.log").read_text()
            return "ForkPoolWorker-1" in output and "ForkPoolWorker-2" in output

        wait_until(both_pool_processes_worked, timeout=60, what="both pool processes at work")
        assert "runs.tasks.record_heartbeat[" not in (tmp_path / "worker.log").read_text()
    finally:
        terminate_group(worker)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


def _make_run(tmp_path, port: int, **extra: str) -> subprocess.Popen:
    env = embedded_env(tmp_path, PORT=str(port), LEDGERFLOW_HEARTBEAT_SECONDS="2", **extra)
    for name in ("LEDGERFLOW_OUTBOUND_ALLOWLIST", "LEDGERFLOW_BASE_URL"):
        env.pop(name, None)
    return subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=ROOT, env=env, stdout=open(tmp_path / "run.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _wait_serving(base: str) -> None:
    wait_until(lambda: _get(f"{base}/healthz")[0] == 200, timeout=120, what="/healthz")
    # Beat ticks, the worker executes: both are up and talking.
    wait_until(lambda: '"worker"' in _get(f"{base}/readyz")[1], timeout=60, what="worker heartbeat")


def _worker_main(tmp_path) -> int:
    """The Celery worker's main process (supervisord's child), not its pool."""
    pids = platform_pids(tmp_path)
    for pid, command in pids.items():
        if " worker " in command and "supervisord" in pids.get(parent_of(pid), ""):
            return pid
    return 0


def test_make_run_serves_login_and_healthz_then_stops_on_sigterm(tmp_path):
    port = free_port()
    # Figures a process of an earlier start left: they would be summed in.
    stale = tmp_path / "metrics" / "histogram_999999.db"
    stale.parent.mkdir()
    stale.write_bytes(b"\0" * 8)
    run = _make_run(
        tmp_path,
        port,
        LEDGERFLOW_DEMO_PAYMENTS_PORT=str(free_port()),
        LEDGERFLOW_DEMO_CRM_PORT=str(free_port()),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_serving(base)
        assert not stale.exists()
        status, body = _get(f"{base}/login/")
        assert status == 200 and "Log in to Ledgerflow" in body
        # Beat ticked and a worker ran the tick: the platform is ready, and
        # those routine ticks stayed out of the INFO log.
        status, body = _get(f"{base}/readyz")
        assert status == 200, body
        for name in ("worker", "beat"):
            text = (tmp_path / "log" / f"{name}.log").read_text()
            # The worker's banner lists its tasks; a tick's own lines name
            # the task with its id: "Task runs.tasks.record_heartbeat[<id>]".
            assert "runs.tasks.record_heartbeat[" not in text, name
            assert "Sending due task" not in text, name
        assert len(platform_pids(tmp_path)) >= 9  # make, launcher, supervisord, 6 programs
        run.send_signal(signal.SIGTERM)  # to make alone: it must stop everything
        asked = time.monotonic()
        run.wait(timeout=30)
        # Nothing of the platform survives: web, worker (and its pool), beat,
        # queues, the demo API, supervisord; and within 10 s.
        wait_until(lambda: not platform_pids(tmp_path), timeout=15, what="all processes to exit")
        assert time.monotonic() - asked < 10
        assert _get(f"{base}/healthz")[0] == 0
        output = (tmp_path / "run.log").read_text()
        assert f"http://127.0.0.1:{port}" in output
        for user in ("admin", "operator", "reviewer"):
            assert f"  {user} " in output
        # What each process said is kept, and shown in the terminal too.
        for name in ("web", "worker", "beat", "queues", "payments", "crm"):
            assert (tmp_path / "log" / f"{name}.log").stat().st_size > 0, name
        assert "celery@" in (tmp_path / "log" / "worker.log").read_text()
        assert "worker   | " in output
    finally:
        stop_group(run)
        kill_platform(tmp_path)


def test_make_run_restarts_a_killed_worker_and_leaves_nothing_behind(tmp_path):
    port = free_port()
    run = _make_run(
        tmp_path,
        port,
        LEDGERFLOW_DEMO_PAYMENTS_PORT=str(free_port()),
        LEDGERFLOW_DEMO_CRM_PORT=str(free_port()),
    )
    base = f"http://127.0.0.1:{port}"
    env = embedded_env(tmp_path)
    try:
        _wait_serving(base)
        worker = _worker_main(tmp_path)
        pool = [pid for pid in platform_pids(tmp_path) if parent_of(pid) == worker]
        assert worker and pool
        os.kill(worker, signal.SIGKILL)
        # Its pool goes with it, a new worker comes, and web serves throughout.
        wait_until(
            lambda: not set(pool) & set(platform_pids(tmp_path)), timeout=10, what="old pool gone"
        )
        wait_until(
            lambda: _get(f"{base}/healthz")[0] == 200 and _worker_main(tmp_path) not in (0, worker),
            timeout=60, what="a new worker",
        )  # fmt: skip
        probe = "from runs.tasks import record_heartbeat; record_heartbeat.delay('after-kill')"
        manage(env, "shell", "--no-imports", "-c", probe)
        wait_until(
            lambda: sqlite_rows(
                tmp_path, "SELECT 1 FROM runs_heartbeat WHERE process = 'after-kill'"
            ),
            timeout=60, what="the new worker to execute a task",
        )  # fmt: skip
        assert _get(f"{base}/login/")[0] == 200
        supervisord_log = (tmp_path / "log" / "supervisord.log").read_text()
        assert "exited: worker (terminated by SIGKILL; not expected)" in supervisord_log
        assert (tmp_path / "log" / "worker.log").read_text().count("celery@") >= 2
        # A service manager stopping the group: SIGTERM, and SIGKILL to what
        # is still there 5 s later.
        os.killpg(run.pid, signal.SIGTERM)
        try:
            wait_until(
                lambda: run.poll() is not None and not group_alive(run.pid),
                timeout=5, interval=0.1, what="the group to exit",
            )  # fmt: skip
        except AssertionError:
            os.killpg(run.pid, signal.SIGKILL)
        wait_until(lambda: not platform_pids(tmp_path), timeout=5, what="no process left")
    finally:
        stop_group(run)
        kill_platform(tmp_path)


def test_make_run_leaves_nothing_behind_when_supervisord_is_killed(tmp_path):
    port = free_port()
    run = _make_run(
        tmp_path,
        port,
        LEDGERFLOW_DEMO_PAYMENTS_PORT=str(free_port()),
        LEDGERFLOW_DEMO_CRM_PORT=str(free_port()),
    )
    try:
        _wait_serving(f"http://127.0.0.1:{port}")
        pids = platform_pids(tmp_path)
        assert any(" worker " in command for command in pids.values())
        os.killpg(run.pid, signal.SIGKILL)  # make, launcher and supervisord at once
        wait_until(lambda: not platform_pids(tmp_path), timeout=5, what="no process left")
    finally:
        stop_group(run)
        kill_platform(tmp_path)


def test_make_run_picks_another_demo_api_port_when_8765_is_taken(tmp_path):
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8765))
        holder.listen()
    except OSError:
        holder.close()  # someone else holds it: the same situation
    port = free_port()
    env_port = {"LEDGERFLOW_DEMO_PAYMENTS_PORT": ""}
    run = _make_run(tmp_path, port, **env_port)
    try:
        _wait_serving(f"http://127.0.0.1:{port}")
        demo = int((tmp_path / "demo-payments-port").read_text())
        assert demo != 8765
        assert _get(f"http://127.0.0.1:{demo}/health") == (200, '{"ok": true}')
        # seed_demo froze that port into the demo flow, the worker may call
        # it, and links in e-mails follow the web port: an order goes through.
        env = embedded_env(tmp_path)
        start = (
            "from flows.models import Flow; from runs import driver;"
            "f = Flow.objects.get(slug='order-fulfilment');"
            "print(driver.start_run(flow=f, input={'order_id': 'A-1', 'amount': 42,"
            " 'sku': 'BOOK-1'}, actor='user:admin').pk)"
        )
        run_id = int(manage(env, "shell", "--no-imports", "-c", start).split()[-1])
        wait_until(
            lambda: sqlite_rows(tmp_path, "SELECT status FROM runs_run WHERE id = ?", (run_id,))
            == [("succeeded",)],
            timeout=90, what="the demo order to succeed",
        )  # fmt: skip
        worker = _worker_main(tmp_path)
        environ = dict(
            item.split("=", 1)
            for item in open(f"/proc/{worker}/environ").read().split("\0")
            if "=" in item
        )
        assert environ["LEDGERFLOW_BASE_URL"] == f"http://127.0.0.1:{port}"
        # Both demo APIs, each on its own port: the CRM's default (8766)
        # went to the payments API here, so the CRM took another.
        crm = int((tmp_path / "demo-crm-port").read_text())
        assert crm not in (demo, 8765)
        allowed = environ["LEDGERFLOW_OUTBOUND_ALLOWLIST"]
        assert allowed == f"127.0.0.1:{demo},127.0.0.1:{crm}"
    finally:
        holder.close()
        stop_group(run)
        kill_platform(tmp_path)
