"""Embedded drill: `make run` itself (supervisord, SQLite, the filesystem
broker) on a fresh data directory, fed webhook bursts while its worker is
SIGKILLed.

The flow is webhook -> transform -> POST /charges to the demo payments API
that `make run` starts (fakeapi/payments.py, honours Idempotency-Key; 50-200
ms per charge). Each delivery is one order with its own Idempotency-Key; a
delivery the platform does not answer is sent again with the same key, as a
real sender would. Each burst sends its deliveries 16 at a time and SIGKILLs
the worker's main process half-way; supervisord restarts it. Then the drill
waits until every accepted delivery's run has ended, checks that every
process of the platform is up, counts orders charged more than once (from
the fake API's charges, by order id, whatever the key), stops the platform
as a service manager would (SIGTERM, SIGKILL 5 s later) and counts what was
left running.

    python -m bench.drill_embedded [--bursts 3] [--deliveries 300] [--concurrency 16]
"""

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx

from bench.common import ROOT, free_port
from tests.processes import embedded_env, parent_of, platform_pids

PROGRAMS = {
    "web": "uvicorn",
    "worker": " worker ",
    "beat": " beat ",
    "queues": "consume_queues",
    "payments": "fakeapi.payments",
    "crm": "fakeapi.crm",
}
DEADLINE_SECONDS = 180
CHARGE_TIMEOUT = 5


def order_flow(payments_url: str) -> dict:
    return {
        "format": "ledgerflow/flow@1",
        "flow": {"slug": "drill-embedded", "name": "Embedded drill orders", "owner": "drill",
                 "runbook": "Replay the dead letter once the payments API answers.",
                 "failure_mode": "Orders wait unpaid."},
        "graph": {
            "nodes": [
                {"id": "hook", "type": "trigger.webhook"},
                {"id": "prepare", "type": "transform",
                 "config": {"fields": {"amount": "{{ trigger.body.amount }}"}}},
                {"id": "charge", "type": "http.request", "config": {
                    "method": "POST", "url": f"{payments_url}/charges",
                    "json_body": {"order_id": "{{ trigger.body.order_id }}",
                                  "amount": "{{ steps.prepare.output.amount }}"},
                    "timeout_seconds": CHARGE_TIMEOUT, "honours_idempotency_key": True},
                 "retry": {"max_attempts": 10, "initial_seconds": 0.2, "max_seconds": 2}},
            ],
            "edges": [{"from": "hook", "to": "prepare"}, {"from": "prepare", "to": "charge"}],
        },
    }  # fmt: skip


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"drill_embedded: timed out after {timeout}s waiting for {what}")


class Platform:
    """`make run` on its own data directory, in its own process group."""

    def __init__(self, data_dir: Path, port: int, payments_port: int, crm_port: int):
        self.data_dir = data_dir
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.payments = f"http://127.0.0.1:{payments_port}"
        self.env = embedded_env(
            data_dir, PORT=str(port), LEDGERFLOW_DEMO_PAYMENTS_PORT=str(payments_port),
            LEDGERFLOW_DEMO_CRM_PORT=str(crm_port), LEDGERFLOW_HEARTBEAT_SECONDS="2",
        )  # fmt: skip
        for name in ("LEDGERFLOW_OUTBOUND_ALLOWLIST", "LEDGERFLOW_BASE_URL"):
            self.env.pop(name, None)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={self.port}"],
            cwd=ROOT, env=self.env, stdout=open(self.data_dir / "run.out", "w"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        _wait(lambda: _get(f"{self.base}/healthz")[0] == 200, 180, "/healthz")
        _wait(lambda: '"worker"' in _get(f"{self.base}/readyz")[1], 120, "a worker heartbeat")
        _wait(lambda: _get(f"{self.payments}/health")[0] == 200, 60, "the payments API")

    def programs(self) -> dict[str, int]:
        """supervisord's children, by program name."""
        pids = platform_pids(self.data_dir)
        found = {}
        for pid, command in pids.items():
            if "supervisord" not in pids.get(parent_of(pid), ""):
                continue
            for name, mark in PROGRAMS.items():
                if mark in command:
                    found[name] = pid
        return found

    def restarts(self) -> int:
        log = (self.data_dir / "log" / "supervisord.log").read_text()
        return log.count("spawned: ") - len(PROGRAMS)

    def stop(self) -> int:
        """SIGTERM the group, SIGKILL it 5 s later; what is left running."""
        if self.proc is None:
            return 0
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        time.sleep(3)  # for the kernel to deliver the parent-death signals
        left = platform_pids(self.data_dir)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        return len(left)


def prepare(platform: Platform) -> str:
    """Configure Django here on the platform's data directory; import and
    activate the flow (owner, runbook, failure mode); its webhook URL."""
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ.update(platform.env, LOG_LEVEL="WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import User

    from connectors.triggers.models import Binding
    from flows import services, transfer

    actor, _ = User.objects.get_or_create(username="drill")
    flow = transfer.import_flow(order_flow(platform.payments), actor=actor)
    services.flow_transition(flow=flow, actor=actor, action="activate")
    return f"{platform.base}/hooks/{Binding.objects.get(flow=flow).token}/"


async def burst(url: str, orders: list[str], concurrency: int, kill) -> dict:
    """Deliver each order once (again with the same key if unanswered);
    call ``kill`` when half of them are answered."""
    limit = asyncio.Semaphore(concurrency)
    accepted: dict[str, int] = {}
    resent = 0
    answered = 0

    async with httpx.AsyncClient(timeout=30) as client:

        async def deliver(order: str) -> None:
            nonlocal resent, answered
            async with limit:
                for attempt in range(8):
                    try:
                        response = await client.post(
                            url, json={"order_id": order, "amount": 10},
                            headers={"Idempotency-Key": order},
                        )  # fmt: skip
                    except httpx.TransportError:
                        response = None
                    if response is not None and response.status_code in (200, 202):
                        accepted[order] = response.json()["run_id"]
                        break
                    resent += 1
                    await asyncio.sleep(0.5 * (attempt + 1))
            answered += 1
            if answered == len(orders) // 2:
                kill()

        await asyncio.gather(*(deliver(order) for order in orders))
    return {"accepted": accepted, "resent": resent}


def kill_worker(platform: Platform, kills: list[dict]) -> None:
    worker = platform.programs().get("worker")
    if worker:
        os.kill(worker, signal.SIGKILL)
        kills.append({"pid": worker, "at": time.monotonic()})


def wait_for_runs(run_ids: list[int], deadline: float) -> dict:
    from runs.models import Run, Step

    while True:
        runs = Run.objects.filter(pk__in=run_ids)
        ended = runs.filter(status__in=["succeeded", "failed", "cancelled"])
        parked = (
            Step.objects.filter(run_id__in=run_ids, status="dead_lettered")
            .exclude(run_id__in=ended.values("pk"))
            .values("run_id")
            .distinct()
            .count()
        )
        terminal = ended.count() + parked
        if terminal == len(run_ids) or time.monotonic() > deadline:
            return {
                "runs": runs.count(),
                "finished": runs.filter(status="succeeded").count(),
                "failed": runs.filter(status__in=["failed", "cancelled"]).count(),
                "dead_lettered": parked,
                "stuck": len(run_ids) - terminal,
                "ended_at": time.monotonic(),
            }
        time.sleep(0.5)


def charges_per_order(payments_url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{payments_url}/charges", timeout=10) as response:
        charges = json.loads(response.read())["charges"]
    counts: dict[str, int] = {}
    for charge in charges:
        counts[charge["order_id"]] = counts.get(charge["order_id"], 0) + 1
    return counts


def run(bursts: int, deliveries: int, concurrency: int) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="ledgerflow-drill-embedded-"))
    platform = Platform(data_dir, free_port(), free_port(), free_port())
    kills: list[dict] = []
    try:
        platform.start()
        url = prepare(platform)
        urllib.request.urlopen(
            urllib.request.Request(
                f"{platform.payments}/control", data=json.dumps({"latency_ms": [50, 200]}).encode(),
                headers={"Content-Type": "application/json"},
            ), timeout=5,
        )  # fmt: skip
        accepted: dict[str, int] = {}
        sent = resent = 0
        for number in range(bursts):
            orders = [f"order-{number}-{n}" for n in range(deliveries)]
            sent += len(orders)
            result = asyncio.run(
                burst(url, orders, concurrency, lambda: kill_worker(platform, kills))
            )
            accepted.update(result["accepted"])
            resent += result["resent"]
            # The next burst kills a worker that is up and working again.
            killed = kills[-1]["pid"] if kills else None
            _wait(lambda killed=killed: platform.programs().get("worker") not in (None, killed),
                  60, "the worker to be restarted")  # fmt: skip
        run_ids = sorted(set(accepted.values()))
        figures = wait_for_runs(run_ids, time.monotonic() + DEADLINE_SECONDS)
        up = platform.programs()
        serving = _get(f"{platform.base}/healthz")[0] == 200
        charged = charges_per_order(platform.payments)
        restarts = platform.restarts()
    finally:
        left_behind = platform.stop()
    from runs.models import Run

    succeeded = set(
        Run.objects.filter(pk__in=run_ids, status="succeeded").values_list("pk", flat=True)
    )
    # Lost: an accepted delivery whose run did not succeed or whose order was
    # never charged.
    lost = sum(1 for order, run_id in accepted.items()
               if run_id not in succeeded or not charged.get(order))  # fmt: skip
    return {
        "deliveries": sent,
        "runs": figures["runs"],
        "finished": figures["finished"],
        "restarts": restarts,
        "lost": lost,
        "duplicate_effects": sum(1 for n in charged.values() if n > 1),
        "sent": sent,
        "accepted": len(accepted),
        "recovery_s": round(figures["ended_at"] - kills[-1]["at"], 1) if kills else 0,
        "stuck": figures["stuck"],
        "failed": figures["failed"],
        "dead_lettered": figures["dead_lettered"],
        "kills": len(kills),
        "resent": resent,
        "processes_up": len(up) if serving else 0,
        "left_behind": left_behind,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--deliveries", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    started = time.monotonic()
    figures = run(args.bursts, args.deliveries, args.concurrency)
    print(f"\ndrill_embedded ({time.monotonic() - started:.0f} s)")
    for key, value in figures.items():
        print(f"  {key:<18} {value}")
    keys = ["deliveries", "runs", "finished", "restarts", "lost", "duplicate_effects",
            "sent", "accepted", "recovery_s", "stuck", "processes_up", "left_behind"]  # fmt: skip
    print("drill_embedded: " + " ".join(f"{k}={figures[k]}" for k in keys), flush=True)


if __name__ == "__main__":
    main()
