"""Shared set-up for drills and benchmarks: a fresh PostgreSQL database, a
Redis database, the fake payments API, and Django configured against them."""

import json
import os
import subprocess
import sys
import tempfile
import threading
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


def drill_database(base: str, *, keep: bool = False) -> str:
    """A fresh database of this drill process's own (``<base>_<pid>``),
    dropped when the process exits: two drills, or a drill and a test run of
    it, can run at once without dropping each other's database. ``keep``
    leaves it in place for inspection (its name is printed)."""
    import atexit

    name = f"{base}_{os.getpid()}"
    url = fresh_database(name)
    if keep:
        atexit.register(lambda: print(f"database kept: {name}", file=sys.stderr))
        return url

    def drop() -> None:
        try:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:
            print(f"could not drop {name}: {exc}", file=sys.stderr)

    atexit.register(drop)
    return url


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
        LEDGERFLOW_DEMO="1",  # the benchmarks' flows use the demo connectors
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


def start_redis(port: int) -> subprocess.Popen:
    """A private redis-server on ``port`` that keeps nothing on disk."""
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


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


# --- drills: runs started from outside, through a flow's webhook ------------------

# The breaker is not under test in the drills (its own tests cover it): late
# answers and refused connections would open it, and its gradual release
# would measure the breaker, not recovery.
DRILL_ENV = {"LEDGERFLOW_BREAKER_FAILURES": "1000000"}
# Runs not settled this long after the last kill are stuck; slower is not.
STUCK_AFTER_SECONDS = 120
SETTLED_RUN = ["succeeded", "failed", "cancelled", "compensated"]


def create_webhook_flow(slug: str, graph: dict) -> tuple[str, int]:
    """Publish ``graph`` (its trigger a webhook) as an active flow with an
    owner, a runbook and a failure mode; its webhook token and id."""
    from django.contrib.auth.models import User

    from connectors.triggers.models import Binding
    from flows import services

    user = User.objects.filter(username="drill").first() or User.objects.create_user("drill")
    flow = services.flow_create(
        actor=user,
        data={"name": slug, "slug": slug, "owner": user, "runbook": "bench/README",
              "failure_mode": "orders are not charged; the drill reports it"},
    )  # fmt: skip
    services.flow_save_draft(flow=flow, actor=user, graph=graph)
    services.flow_publish(flow=flow, actor=user)
    services.flow_transition(flow=flow, actor=user, action="activate")
    return Binding.objects.get(flow=flow).token, flow.pk


def web_service(env: dict, port: int, logdir: Path):
    """The web process under uvicorn, as `make run` serves it."""
    from bench.supervisor import Service

    argv = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--lifespan", "off", "--log-level", "warning"]  # fmt: skip
    return Service("web", argv, {**env, "LEDGERFLOW_PROCESS": "web"}, logdir / "web.log")


def wait_for_http(url: str, seconds: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


class Deliveries:
    """Webhook deliveries of orders, one Idempotency-Key per order; what was
    sent and what was accepted (2xx, with the run id the answer named)."""

    def __init__(self, url: str):
        self.url = url
        self.sent = 0
        self.accepted: dict[str, int | None] = {}
        self.refused: dict[int, int] = {}  # status (0: no answer) -> count
        self.lock = threading.Lock()

    def deliver(self, orders: list[str], *, concurrency: int = 8, pace: float = 0.0) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import httpx

        with httpx.Client(timeout=30) as client, ThreadPoolExecutor(concurrency) as pool:

            def one(order: str) -> None:
                with self.lock:
                    self.sent += 1
                try:
                    response = client.post(
                        self.url, json={"order_id": order, "amount": 10},
                        headers={"Idempotency-Key": f"delivery-{order}"},
                    )  # fmt: skip
                    code = response.status_code
                    run_id = response.json().get("run_id") if 200 <= code < 300 else None
                except (httpx.TransportError, ValueError):
                    code = 0
                with self.lock:
                    if 200 <= code < 300:
                        self.accepted[order] = run_id
                    else:
                        self.refused[code] = self.refused.get(code, 0) + 1

            for order in orders:
                pool.submit(one, order)
                if pace:
                    time.sleep(pace)

    def run_ids(self) -> list[int]:
        return [run_id for run_id in self.accepted.values() if run_id is not None]

    def lost(self) -> int:
        """Accepted deliveries without a run."""
        from runs.models import Run

        named = self.run_ids()
        found = set(Run.objects.filter(pk__in=named).values_list("pk", flat=True))
        return sum(1 for run_id in self.accepted.values() if run_id not in found)


def settled_count(run_ids: list[int]) -> int:
    """Runs that ended, or wait on a dead letter for a person."""
    from runs.models import Run, Step

    ended = Run.objects.filter(pk__in=run_ids, status__in=SETTLED_RUN)
    parked = Step.objects.filter(run_id__in=run_ids, status="dead_lettered")
    parked = parked.exclude(run__status__in=SETTLED_RUN).values("run_id").distinct()
    return ended.count() + parked.count()


def wait_until_settled(run_ids: list[int], since: float, stuck_after: float) -> dict:
    """Poll until every run has settled, or ``stuck_after`` seconds after
    ``since`` (the last kill or outage); what the runs came to, and how long
    recovery took (from ``since`` until every run had settled)."""
    recovery = None
    while True:
        if settled_count(run_ids) == len(run_ids):
            recovery = time.monotonic() - since
            break
        if time.monotonic() - since > stuck_after:
            break
        time.sleep(0.25)
    figures = outcomes(run_ids)
    figures["recovery_s"] = round(recovery, 1) if recovery is not None else float("nan")
    return figures


def queue_length(redis_url: str) -> int:
    """Messages waiting in the Celery queue: the broker's backlog (-1: no
    answer)."""
    import redis

    try:
        return redis.Redis.from_url(redis_url, socket_timeout=2).llen("celery")
    except redis.RedisError:
        return -1


def outcomes(run_ids: list[int]) -> dict:
    from runs.models import Run, Step

    rows = Run.objects.filter(pk__in=run_ids)
    letters = Step.objects.filter(run_id__in=run_ids, status="dead_lettered")
    unknown = set(letters.filter(outcome_unknown=True).values_list("run_id", flat=True))
    other_letters = set(letters.values_list("run_id", flat=True)) - unknown
    finished = rows.filter(status="succeeded").count()
    failed = rows.filter(status__in=["failed", "cancelled", "compensated"]).count()
    return {
        "rows": rows.count(),
        "finished": finished,
        "outcome_unknown": len(unknown),
        "dead_letters": len(other_letters),
        "failed": failed,
        "stuck": len(run_ids) - settled_count(run_ids),
    }


def payments_report(url: str, seconds: float = 30) -> dict:
    """The fake API's effects report, waiting out a last refusal window."""
    return payments_control(url, None, seconds, path="/report")


def payments_control(
    url: str, body: dict | None, seconds: float = 10, path: str = "/control"
) -> dict:
    """A control call (or, with ``path``, another call) that waits out a
    window in which the fake API refuses connections."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return payments_call(url, path, body)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def print_figures(name: str, figures: dict, seconds: float, keys: list[str]) -> None:
    print(f"\n{name} ({seconds:.0f} s)")
    for key, value in figures.items():
        print(f"  {key:<18} {value}")
    print(f"{name}: " + " ".join(f"{k}={figures[k]}" for k in keys), flush=True)
