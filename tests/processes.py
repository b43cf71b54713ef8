"""Helpers for tests that start real platform processes on the embedded
default (SQLite and the filesystem broker) in a temporary data directory."""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

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
