"""Helpers for tests that start real platform processes on the embedded
default (SQLite and the filesystem broker) in a temporary data directory."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fakeapi.payments import PaymentsServer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# Variables of the test session that a platform of its own must not inherit.
SESSION_ONLY = {
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SETTINGS_MODULE",
    # The session's metrics folder: a platform keeps its own (config/settings.py).
    "PROMETHEUS_MULTIPROC_DIR",
}


def embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SESSION_ONLY}
    env.update(
        LEDGERFLOW_DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="config.settings",
        PATH=f"{BIN}:{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        LEDGERFLOW_DEMO="1",  # the demo's flows use its connectors
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def worker_command(concurrency: int) -> list[str]:
    """A Celery worker with ``concurrency`` pool processes, logging INFO."""
    return [
        sys.executable, "-m", "celery", "-A", "config", "worker",
        "--concurrency", str(concurrency), "--loglevel", "INFO",
        "--without-mingle", "--without-gossip",
    ]  # fmt: skip


def start_worker(env: dict[str, str], log_path: Path, concurrency: int) -> subprocess.Popen:
    """A Celery worker in a process group of its own (``terminate_group``
    stops it and its pool), writing to ``log_path``."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            worker_command(concurrency), cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def order_file(payments_url: str, owner: str) -> dict:
    """An export of the orders flow: a manual trigger, a charge at the fake
    payments API, a one-second delay and a confirmation."""
    return {
        "format": "ledgerflow/flow@1",
        "flow": {"slug": "orders", "name": "Orders", "owner": owner,
                 "runbook": "Replay the dead letter.", "failure_mode": "Orders ship unpaid."},
        "graph": {
            "nodes": [
                {"id": "start", "type": "trigger.manual"},
                {"id": "prepare", "type": "transform",
                 "config": {"fields": {"amount": "{{ trigger.amount * 100 }}"}}},
                {"id": "charge", "type": "http.request", "config": {
                    "method": "POST", "url": f"{payments_url}/charges",
                    "json_body": {"order_id": "{{ trigger.order_id }}",
                                  "amount": "{{ steps.prepare.output.amount }}"},
                    "honours_idempotency_key": True}},
                {"id": "settle", "type": "delay", "config": {"seconds": 1}},
                {"id": "confirm", "type": "transform",
                 "config": {"fields": {"charge": "{{ steps.charge.output.body.id }}"}}},
            ],
            "edges": [
                {"from": "start", "to": "prepare"}, {"from": "prepare", "to": "charge"},
                {"from": "charge", "to": "settle"}, {"from": "settle", "to": "confirm"},
            ],
        },
    }  # fmt: skip


# The demo seeds runs of its own: count only the imported flow's.
ORDERS_RUNS = (
    "SELECT COUNT(*) FROM runs_run r JOIN flows_flow f ON f.id = r.flow_id WHERE f.slug = 'orders'"
)


@contextmanager
def embedded_orders(
    data_dir: Path, **extra: str
) -> Iterator[tuple[dict[str, str], PaymentsServer]]:
    """The embedded default in ``data_dir``, migrated and seeded, with the
    orders flow imported and active against a fake payments API; yields the
    environment for its processes (which may reach that API and nothing else
    local) and the API, which stops on exit."""
    env = embedded_env(data_dir, **extra)
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo")
    with PaymentsServer() as payments:
        flow_path = data_dir / "orders.json"
        flow_path.write_text(json.dumps(order_file(payments.url, "operator")))
        manage(env, "import_flow", str(flow_path), "--activate")
        env["LEDGERFLOW_OUTBOUND_ALLOWLIST"] = payments.url.removeprefix("http://")
        yield env, payments


def start_order(env: dict[str, str], data_dir: Path, order: dict) -> None:
    """Start a run of the orders flow with ``order`` as its input."""
    (data_dir / "in.json").write_text(json.dumps(order))
    manage(env, "start_run", "orders", "--input", str(data_dir / "in.json"))


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sqlite_rows(data_dir: Path, sql: str, params=()) -> list[tuple]:
    with sqlite3.connect(data_dir / "ledgerflow.sqlite3", timeout=20) as conn:
        return conn.execute(sql, params).fetchall()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def terminate_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM the group and give it ``grace`` seconds for a warm shutdown,
    then kill whatever is left. For cleanup, where a slow stop (a loaded
    machine, Celery finishing its pool) is not what the test is about."""
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=grace)
        wait_until(lambda: not group_alive(proc.pid), timeout=grace, what="the group to exit")
    except (ProcessLookupError, subprocess.TimeoutExpired, AssertionError):
        pass
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Last-resort cleanup so a failing test never leaves processes behind.

    The whole process group goes, not only its leader: a Celery worker whose
    shell has exited lives on in the group (and, orphaned, would keep
    consuming from the test's broker long after the test).
    """
    try:
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass
    proc.wait(timeout=timeout)


def platform_pids(data_dir: Path) -> dict[int, str]:
    """Every live process started for the data directory ``data_dir`` (they
    all carry LEDGERFLOW_DATA_DIR in their environment), with its command."""
    marker = f"LEDGERFLOW_DATA_DIR={data_dir}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def kill_platform(data_dir: Path) -> None:
    """Cleanup: SIGKILL whatever still runs for ``data_dir``."""
    for pid in platform_pids(data_dir):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
