"""Broker drill: kill and restart Redis mid-load and count what was lost,
stuck or charged twice.

The drill starts its own redis-server on a spare port (never the shared
one), delivers the kill drill's orders through the flow's webhook to the web
process, paced, with two worker processes, SIGKILLs Redis while deliveries
arrive and runs execute (every queued message is lost with it: it keeps
nothing on disk), and starts it again. The recovery sweep re-dispatches lost
work from the database. Celery 5 workers can stop consuming after a Redis
restart; the supervisor's liveness check (no event appended for a while
although runs are unfinished) restarts them.

``--unprotected`` switches the re-dispatch of lost messages off (its
interval becomes a day), to prove the drill sees lost work: ``stuck`` must
then be above 0.

    python -m bench.drill_broker [--runs 300] [--unprotected] [--stuck-after 120]
"""

import argparse
import signal
import subprocess
import threading
import time

from bench import common
from bench.drill_kill import LATE_FRACTION, SWEEP_SECONDS, order_graph
from bench.drill_kill import worker_services as services_for
from bench.supervisor import Supervisor

STALL_SECONDS = 12
# Deliveries are spread over at most this long; Redis dies this far into
# them, for this long.
DELIVERY_SECONDS = 8.0
OUTAGE_AT, OUTAGE_FOR = 0.3, 3.0


def run(runs: int, *, unprotected: bool = False,
        stuck_after: float = common.STUCK_AFTER_SECONDS) -> dict:  # fmt: skip
    database = common.drill_database(
        "ledgerflow_drill_broker" + ("_unprotected" if unprotected else "")
    )
    redis_port = common.free_port()
    broker = common.start_redis(redis_port)
    env = common.platform_env(
        database,
        f"redis://127.0.0.1:{redis_port}/0",
        LEDGERFLOW_SWEEP_SECONDS=str(SWEEP_SECONDS),
        LEDGERFLOW_REDISPATCH_SECONDS=str(86400 if unprotected else 5),
        LEDGERFLOW_LEASE_MARGIN_SECONDS="3",
        **common.DRILL_ENV,
    )
    common.setup_django(env)
    from pathlib import Path

    from django.db import connection

    from runs.ground.models import Event
    from runs.models import Run

    port = common.free_port()
    payments = common.start_payments(port, (50, 200))
    api = f"http://127.0.0.1:{port}"
    common.payments_control(api, {"late_fraction": LATE_FRACTION, "late_seconds": 3})
    # The workers may reach the fake API, and nothing else on this machine.
    env["LEDGERFLOW_OUTBOUND_ALLOWLIST"] = f"127.0.0.1:{port}"
    logdir = Path(env["LEDGERFLOW_DATA_DIR"])
    progress = {"last_id": 0, "changed_at": time.monotonic(), "restarted_at": 0.0, "queued": -1}

    def stalled() -> bool:
        """Liveness: unfinished runs, but for a while no event appended and
        no message taken from the queue. A worker working through duplicate
        messages appends nothing, yet it consumes: restarting it would only
        lose its prefetched messages."""
        last = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        connection.close()  # this check runs in the supervisor's thread
        now = time.monotonic()
        queued = common.queue_length(f"redis://127.0.0.1:{redis_port}/0")
        consumed = 0 <= queued < progress["queued"]
        progress["queued"] = queued
        if last != progress["last_id"] or consumed:
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

    web_port = common.free_port()
    # Spread over DELIVERY_SECONDS (small forms: 0.1 s per order, at least 4 s).
    pace = min(DELIVERY_SECONDS, max(4.0, 0.1 * runs)) / max(runs, 1)
    try:
        token, _ = common.create_webhook_flow("drill-orders", order_graph(api, unsafe=False))
        services = [common.web_service(env, web_port, logdir), *services_for(env, logdir)]
        with Supervisor(services, stalled=stalled) as supervisor:
            common.wait_for_http(f"http://127.0.0.1:{web_port}/healthz")
            time.sleep(2)
            holder: dict = {}

            def restart_later():
                holder["broker"] = _outage(broker, redis_port, OUTAGE_AT * runs * pace, OUTAGE_FOR)
                holder["back_at"] = time.monotonic()

            outage = threading.Thread(target=restart_later)
            outage.start()
            deliveries = common.Deliveries(f"http://127.0.0.1:{web_port}/hooks/{token}/")
            deliveries.deliver([f"order-{n}" for n in range(runs)], concurrency=4, pace=pace)
            outage.join()
            broker = holder["broker"]
            run_ids = deliveries.run_ids()
            figures = common.wait_until_settled(run_ids, holder["back_at"], stuck_after)
            figures["queued_at_end"] = common.queue_length(f"redis://127.0.0.1:{redis_port}/0")
            watchdog = supervisor.watchdog_restarts
        report = common.payments_call(api, "/report")
    finally:
        payments.send_signal(signal.SIGTERM)
        broker.send_signal(signal.SIGTERM)
    figures.pop("rows")
    figures.update(
        runs=runs,
        sent=deliveries.sent,
        accepted=len(deliveries.accepted),
        refused=deliveries.refused,
        lost=deliveries.lost(),
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
    return common.start_redis(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--unprotected", action="store_true",
                        help="no re-dispatch of lost messages: stuck runs must show")  # fmt: skip
    parser.add_argument("--stuck-after", type=float, default=common.STUCK_AFTER_SECONDS)
    args = parser.parse_args()
    started = time.monotonic()
    figures = run(args.runs, unprotected=args.unprotected, stuck_after=args.stuck_after)
    keys = ["runs", "accepted", "finished", "lost", "stuck", "duplicate_effects", "recovery_s"]
    common.print_figures("drill_broker", figures, time.monotonic() - started, keys)


if __name__ == "__main__":
    main()
