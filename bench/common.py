"""Shared set-up for drills and benchmarks: a fresh PostgreSQL database, a
Redis database, the fake payments API, and Django configured against them."""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def platform_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CELERY_BROKER_URL", None)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="config.settings",
        LEDGERFLOW_DATA_DIR=tempfile.mkdtemp(prefix="ledgerflow-bench-"),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def setup_django(env: dict[str, str]) -> None:
    """Configure this process like the platform's, then migrate."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def put_in_service(flow, actor):
    """Give a bench flow the facts activation asks for and activate it:
    only active flows start runs."""
    from flows import services

    facts = {"owner": actor, "runbook": "Bench flow: rerun the bench.",
             "failure_mode": "A benchmark figure is missing."}  # fmt: skip
    flow = services.flow_update(flow=flow, actor=actor, data=facts)
    return services.flow_transition(flow=flow, actor=actor, action="activate")


def start_payments(port: int, latency_ms: tuple[int, int]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakeapi.payments", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            payments_call(url, "/control", {"latency_ms": list(latency_ms)})
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the fake payments API did not start")


def payments_call(url: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def environment_facts() -> dict:
    import platform as stdlib_platform

    import celery
    import django

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    with psycopg.connect(PG_ADMIN) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    return {
        "commit": commit or "unknown",
        "cores": os.cpu_count(),
        "python": stdlib_platform.python_version(),
        "django": django.get_version(),
        "celery": celery.__version__,
        "postgresql": pg_version,
    }
