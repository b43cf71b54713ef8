"""Kill drill: SIGKILL workers mid-charge and count what was lost, stuck or
charged twice.

Runs N runs of prepare -> charge -> confirm, where charge goes through the
fake payments API (50-200 ms per charge), on PostgreSQL and Redis with two
worker processes, and SIGKILLs the worker's main process and its pool
children in turn, at least half the time while a charge is in flight. A
supervisor restarts what died. Figures come from the database (runs) and from
the fake API (charges per order id, and under how many keys).

    python -m bench.drill_kill [--runs 500] [--kills 20] [--unsafe]
"""

import argparse
import random
import signal
import sys
import time

from bench import common
from bench.supervisor import Service, Supervisor, children, pids_talking_to

SWEEP_SECONDS = 1
LEASE_MARGIN = 3
CHARGE_TIMEOUT = 2


def order_flow(payments_url: str, *, unsafe: bool) -> dict:
    return {
        "format": "ledgerflow/flow@1",
        "flow": {"slug": "drill-orders", "name": "Drill orders"},
        "graph": {
            "nodes": [
                {"id": "start", "type": "trigger.manual"},
                {"id": "prepare", "type": "transform",
                 "config": {"fields": {"amount": "{{ trigger.amount }}"}}},
                {"id": "charge", "type": "http.request", "config": {
                    "method": "POST", "url": f"{payments_url}/charges",
                    "json_body": {"order_id": "{{ trigger.order_id }}",
                                  "amount": "{{ steps.prepare.output.amount }}"},
                    "timeout_seconds": CHARGE_TIMEOUT,
                    "honours_idempotency_key": not unsafe},
                 "retry": {"max_attempts": 10, "initial_seconds": 0.2, "max_seconds": 2}},
                {"id": "confirm", "type": "transform",
                 "config": {"fields": {"charge": "{{ steps.charge.output.body.id }}"}}},
            ],
            "edges": [{"from": "start", "to": "prepare"}, {"from": "prepare", "to": "charge"},
                      {"from": "charge", "to": "confirm"}],
        },
    }  # fmt: skip


def worker_services(env: dict, logdir) -> list[Service]:
    py = sys.executable
    return [
        Service(
            "worker",
            [py, "-m", "celery", "-A", "config", "worker", "--concurrency", "2",
             "--loglevel", "WARNING", "--without-mingle", "--without-gossip"],
            env, logdir / "worker.log",
        ),
        Service(
            "beat",
            [py, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING",
             "--schedule", str(logdir / "beat-schedule")],
            env, logdir / "beat.log",
        ),
    ]  # fmt: skip


def run(runs: int, kills: int, unsafe: bool, name: str) -> dict:
    database = common.fresh_database(f"ledgerflow_{name}")
    redis_url = "redis://127.0.0.1:6379/12"
    common.flush_redis(redis_url)
    env = common.platform_env(
        database,
        redis_url,
        LEDGERFLOW_SWEEP_SECONDS=str(SWEEP_SECONDS),
        LEDGERFLOW_REDISPATCH_SECONDS="5",
        LEDGERFLOW_LEASE_MARGIN_SECONDS=str(LEASE_MARGIN),
    )
    common.setup_django(env)
    from pathlib import Path

    from django.contrib.auth.models import User

    from flows import transfer
    from runs import driver

    port = common.free_port()
    payments = common.start_payments(port, (50, 200))
    api = f"http://127.0.0.1:{port}"
    # The workers may reach the fake API, and nothing else on this machine.
    env["LEDGERFLOW_OUTBOUND_ALLOWLIST"] = f"127.0.0.1:{port}"
    logdir = Path(env["LEDGERFLOW_DATA_DIR"])
    lease = CHARGE_TIMEOUT + LEASE_MARGIN
    try:
        actor = User.objects.create_user("drill")
        flow = transfer.import_flow(order_flow(api, unsafe=unsafe), actor=actor)
        flow = common.put_in_service(flow, actor)
        run_ids = []
        with Supervisor(worker_services(env, logdir)) as supervisor:
            time.sleep(2)  # let the worker come up before the first kill
            for n in range(runs):
                started = driver.start_run(
                    flow=flow, input={"order_id": f"order-{n}", "amount": 10}, actor="user:drill"
                )
                run_ids.append(started.pk)
            kill_log = _kill_loop(supervisor, kills, port, run_ids)
            last_kill = time.monotonic()
            deadline = last_kill + 2 * (lease + SWEEP_SECONDS)
            figures = _wait_for_terminal(run_ids, deadline)
        report = common.payments_call(api, "/report")
    finally:
        payments.send_signal(signal.SIGTERM)
    figures.update(
        runs=runs,
        lost=runs - figures.pop("rows"),
        duplicate_effects=len(report["duplicates"]),
        kills=len(kill_log),
        kills_in_effect=sum(1 for k in kill_log if k["in_effect"]),
        kills_main=sum(1 for k in kill_log if k["target"] == "main"),
        restarts=supervisor.services["worker"].restarts,
        charges=report["charges"],
    )
    return figures


def _kill_loop(supervisor: Supervisor, kills: int, port: int, run_ids: list[int]) -> list[dict]:
    """Spread the kills over the workload: kill k waits until k/(kills+1) of
    the runs are done, so the last kill falls near the end of the work and
    "stuck after the last kill" measures recovery, not a queue."""

    log = []
    in_effect_wanted = (kills + 1) // 2
    while len(log) < kills:
        time.sleep(random.uniform(0.2, 0.6))
        # Progress is runs settled, not runs succeeded: in the unsafe variant
        # every kill during a charge parks a run as an outcome-unknown dead
        # letter, which never succeeds.
        done = _settled(run_ids)
        if done == len(run_ids):
            break  # nothing left to interrupt; the report counts the kills made
        if done < len(run_ids) * (len(log) + 1) / (kills + 1):
            continue
        worker = supervisor.services["worker"]
        if not worker.alive() or time.monotonic() - worker.started_at < 2:
            continue  # restarting; kill a worker that is working
        target = "main" if len(log) % 2 == 0 else "child"
        main = worker.proc.pid
        pool = children(main)
        # Prefer a moment when a charge is in flight, until enough kills were.
        need_effect = sum(k["in_effect"] for k in log) < in_effect_wanted
        chosen = None
        for _ in range(60 if need_effect else 1):
            busy = pids_talking_to(port, pool)
            if busy:
                chosen = main if target == "main" else busy[0]
                break
            time.sleep(0.02)
            pool = children(main)
        in_effect = chosen is not None
        if chosen is None:
            if not pool and target == "child":
                continue
            chosen = main if target == "main" else random.choice(pool)
        try:
            import os

            os.kill(chosen, signal.SIGKILL)
        except ProcessLookupError:
            continue
        log.append({"target": target, "pid": chosen, "in_effect": in_effect, "at": time.time()})
    return log


def _settled(run_ids: list[int]) -> int:
    from runs.models import Run, Step

    ended = Run.objects.filter(pk__in=run_ids, status__in=["succeeded", "failed", "cancelled"])
    parked = Step.objects.filter(run_id__in=run_ids, status="dead_lettered").values("run_id")
    return ended.count() + parked.distinct().count()


def _wait_for_terminal(run_ids: list[int], deadline: float) -> dict:
    from runs.models import Run, Step

    while True:
        rows = Run.objects.filter(pk__in=run_ids)
        finished = rows.filter(status="succeeded").count()
        unknown = (
            Step.objects.filter(run_id__in=run_ids, status="dead_lettered", outcome_unknown=True)
            .values("run_id")
            .distinct()
            .count()
        )
        failed = rows.filter(status__in=["failed", "cancelled"]).count()
        total = rows.count()
        if finished + unknown + failed == len(run_ids) or time.monotonic() > deadline:
            stuck = total - finished - unknown - failed
            return {
                "rows": total,
                "finished": finished,
                "outcome_unknown": unknown,
                "failed": failed,
                "stuck": stuck,
            }
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--unsafe", action="store_true", help="declare the charge unsafe")
    args = parser.parse_args()
    name = "drill_kill_unsafe" if args.unsafe else "drill_kill"
    started = time.monotonic()
    figures = run(args.runs, args.kills, args.unsafe, name)
    print_table(name, figures, time.monotonic() - started)


def print_table(name: str, figures: dict, seconds: float) -> None:
    print(f"\n{name} ({seconds:.0f} s)")
    for key, value in figures.items():
        print(f"  {key:<18} {value}")
    keys = ["runs", "finished", "lost", "stuck", "duplicate_effects", "kills", "kills_in_effect"]
    if name.endswith("unsafe"):
        keys.insert(2, "outcome_unknown")
    print(f"{name}: " + " ".join(f"{k}={figures[k]}" for k in keys), flush=True)


if __name__ == "__main__":
    main()
