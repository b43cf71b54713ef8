"""Broker drill: kill and restart Redis mid-load and count what was lost,
stuck or charged twice.

The drill starts its own redis-server on a spare port (never the shared
one), runs the kill drill's order flow with two worker processes, SIGKILLs
Redis while runs are being submitted and executed (every queued message is
lost with it: it keeps nothing on disk), and starts it again. The recovery
sweep re-dispatches lost work from the database. Celery 5 workers can stop
consuming after a Redis restart; the supervisor's liveness check (no event
appended for a while although runs are unfinished) restarts them.

    python -m bench.drill_broker [--runs 300]
"""

import argparse
import signal
import subprocess
import threading
import time

from bench import common
from bench.drill_kill import (
    CHARGE_TIMEOUT,
    LEASE_MARGIN,
    SWEEP_SECONDS,
    _wait_for_terminal,
    order_flow,
)
from bench.drill_kill import worker_services as services_for
from bench.supervisor import Supervisor

STALL_SECONDS = 12


def start_redis(port: int) -> subprocess.Popen:
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


def run(runs: int) -> dict:
    database = common.fresh_database("ledgerflow_drill_broker")
    redis_port = common.free_port()
    broker = start_redis(redis_port)
    env = common.platform_env(
        database,
        f"redis://127.0.0.1:{redis_port}/0",
        LEDGERFLOW_SWEEP_SECONDS=str(SWEEP_SECONDS),
        LEDGERFLOW_REDISPATCH_SECONDS="5",
        LEDGERFLOW_LEASE_MARGIN_SECONDS=str(LEASE_MARGIN),
    )
    common.setup_django(env)
    from pathlib import Path

    from django.contrib.auth.models import User
    from django.db import connection

    from flows import transfer
    from runs import driver
    from runs.models import Event, Run

    port = common.free_port()
    payments = common.start_payments(port, (50, 200))
    api = f"http://127.0.0.1:{port}"
    # The workers may reach the fake API, and nothing else on this machine.
    env["LEDGERFLOW_OUTBOUND_ALLOWLIST"] = f"127.0.0.1:{port}"
    logdir = Path(env["LEDGERFLOW_DATA_DIR"])
    progress = {"last_id": 0, "changed_at": time.monotonic(), "restarted_at": 0.0}

    def stalled() -> bool:
        """Liveness: unfinished runs, but no event appended for a while."""
        last = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        connection.close()  # this check runs in the supervisor's thread
        now = time.monotonic()
        if last != progress["last_id"]:
            progress.update(last_id=last, changed_at=now)
            return False
        unfinished = Run.objects.exclude(status__in=["succeeded", "failed", "cancelled"]).exists()
        connection.close()
        if unfinished and now - progress["changed_at"] > STALL_SECONDS:
            if now - progress["restarted_at"] > STALL_SECONDS:
                progress["restarted_at"] = now
                progress["changed_at"] = now
                return True
        return False

    lease = CHARGE_TIMEOUT + LEASE_MARGIN
    try:
        actor = User.objects.create_user("drill")
        flow = transfer.import_flow(order_flow(api, unsafe=False), actor=actor)
        flow = common.put_in_service(flow, actor)
        run_ids: list[int] = []
        with Supervisor(services_for(env, logdir), stalled=stalled) as supervisor:
            time.sleep(2)
            holder: dict = {}

            def restart_later():
                holder["broker"] = _outage(broker, redis_port, 4.0, 3.0)

            outage = threading.Thread(target=restart_later)
            outage.start()
            for n in range(runs):
                started = driver.start_run(
                    flow=flow, input={"order_id": f"order-{n}", "amount": 10}, actor="user:drill"
                )
                run_ids.append(started.pk)
                time.sleep(0.03)
            outage.join()
            broker = holder["broker"]
            figures = _wait_for_terminal(
                run_ids, time.monotonic() + 2 * (lease + SWEEP_SECONDS) + 40
            )
            watchdog = supervisor.watchdog_restarts
        report = common.payments_call(api, "/report")
    finally:
        payments.send_signal(signal.SIGTERM)
        broker.send_signal(signal.SIGTERM)
    figures.update(
        runs=runs,
        lost=runs - figures.pop("rows"),
        duplicate_effects=len(report["duplicates"]),
        broker_restarts=1,
        watchdog_restarts=watchdog,
        charges=report["charges"],
    )
    return figures


def _outage(broker: subprocess.Popen, port: int, after: float, down_for: float):
    time.sleep(after)
    broker.send_signal(signal.SIGKILL)
    broker.wait()
    time.sleep(down_for)
    return start_redis(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    started = time.monotonic()
    figures = run(args.runs)
    print(f"\ndrill_broker ({time.monotonic() - started:.0f} s)")
    for key, value in figures.items():
        print(f"  {key:<18} {value}")
    keys = ["runs", "finished", "lost", "stuck", "duplicate_effects"]
    print("drill_broker: " + " ".join(f"{k}={figures[k]}" for k in keys), flush=True)


if __name__ == "__main__":
    main()
