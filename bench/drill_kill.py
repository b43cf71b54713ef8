"""Kill drill: SIGKILL workers mid-charge and count what was lost, stuck or
charged twice.

Orders arrive from outside, as webhook deliveries to an active flow (hook ->
prepare -> charge -> confirm), served by the web process under uvicorn; the
charge goes through the fake payments API (50-200 ms per charge, and a few
charges answered only after the client's time-out, the charge made). Two
worker processes run on PostgreSQL and Redis; the drill SIGKILLs the worker's
main process and its pool children in turn, at least half the time while a
charge is in flight. A supervisor restarts what died. Figures come from the
deliveries (``lost``: accepted without a run), the database (runs) and the
fake API (charges per order id, whatever key they came with).

``--unsafe`` declares the charge unsafe and makes the remote ignore
Idempotency-Key: every kill or late answer mid-charge must leave an
outcome-unknown dead letter, never a second charge.

``--unprotected`` switches the protection off, to prove the drill sees the
failure it guards against: with ``--unsafe`` the platform treats the unsafe
charge as safe (``LEDGERFLOW_DRILL_RERUN_UNSAFE_STEPS``); without it the
remote ignores the keys the charge is declared to honour. Either way
``duplicate_effects`` must then be above 0.

    python -m bench.drill_kill [--runs 500] [--kills 20] [--unsafe] [--unprotected]
"""

import argparse
import datetime as dt
import os
import random
import signal
import sys
import time

from bench import common
from bench.supervisor import Service, Supervisor, children, pids_talking_to

SWEEP_SECONDS = 1
REDISPATCH_SECONDS = 5
LEASE_MARGIN = 3
CHARGE_TIMEOUT = 2
# This share of charges is answered CHARGE_TIMEOUT + 1 s late, after charging.
LATE_FRACTION = 0.03


def clock_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def order_graph(payments_url: str, *, unsafe: bool) -> dict:
    return {
        "nodes": [
            {"id": "hook", "type": "trigger.webhook"},
            {"id": "prepare", "type": "transform",
             "config": {"fields": {"amount": "{{ trigger.body.amount }}"}}},
            {"id": "charge", "type": "http.request", "config": {
                "method": "POST", "url": f"{payments_url}/charges",
                "json_body": {"order_id": "{{ trigger.body.order_id }}",
                              "amount": "{{ steps.prepare.output.amount }}"},
                "timeout_seconds": CHARGE_TIMEOUT,
                "honours_idempotency_key": not unsafe},
             "retry": {"max_attempts": 10, "initial_seconds": 0.2, "max_seconds": 2}},
            {"id": "confirm", "type": "transform",
             "config": {"fields": {"charge": "{{ steps.charge.output.body.id }}"}}},
        ],
        "edges": [{"from": "hook", "to": "prepare"}, {"from": "prepare", "to": "charge"},
                  {"from": "charge", "to": "confirm"}],
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


def drill_env(name: str, redis_url: str, *, rerun_unsafe: bool, keep_db: bool = False) -> dict:
    env = common.platform_env(
        common.drill_database(f"ledgerflow_{name}", keep=keep_db),
        redis_url,
        LEDGERFLOW_SWEEP_SECONDS=str(SWEEP_SECONDS),
        LEDGERFLOW_REDISPATCH_SECONDS=str(REDISPATCH_SECONDS),
        LEDGERFLOW_LEASE_MARGIN_SECONDS=str(LEASE_MARGIN),
        **common.DRILL_ENV,
    )
    if rerun_unsafe:
        env["LEDGERFLOW_DRILL_RERUN_UNSAFE_STEPS"] = "1"
    return env


def run(runs: int, kills: int, unsafe: bool, name: str, *, unprotected: bool = False,
        stuck_after: float = common.STUCK_AFTER_SECONDS, keep_db: bool = False,
        timelines: int = 0) -> dict:  # fmt: skip
    # Its own redis-server (broker and breaker store): drills may run side
    # by side, and never touch the shared one.
    redis_port = common.free_port()
    redis = common.start_redis(redis_port)
    if unprotected:
        name += "_unprotected"
    env = drill_env(name, f"redis://127.0.0.1:{redis_port}/0",
                    rerun_unsafe=unsafe and unprotected, keep_db=keep_db)  # fmt: skip
    common.setup_django(env)
    from pathlib import Path

    port = common.free_port()
    payments = common.start_payments(port, (50, 200))
    api = f"http://127.0.0.1:{port}"
    # A remote that ignores keys: the unsafe charge's, or (unprotected) the
    # safe charge's, whose declaration is then a lie.
    common.payments_control(api, {"honour_keys": not (unsafe or unprotected),
                                  "late_fraction": LATE_FRACTION, "late_next": 1,
                                  "late_seconds": CHARGE_TIMEOUT + 1})  # fmt: skip
    # The workers may reach the fake API, and nothing else on this machine.
    env["LEDGERFLOW_OUTBOUND_ALLOWLIST"] = f"127.0.0.1:{port}"
    logdir = Path(env["LEDGERFLOW_DATA_DIR"])
    lease = CHARGE_TIMEOUT + LEASE_MARGIN
    web_port = common.free_port()
    try:
        token, _ = common.create_webhook_flow("drill-orders", order_graph(api, unsafe=unsafe))
        services = [common.web_service(env, web_port, logdir), *worker_services(env, logdir)]
        with Supervisor(services) as supervisor:
            common.wait_for_http(f"http://127.0.0.1:{web_port}/healthz")
            time.sleep(2)  # let the worker come up before the first kill
            began = time.monotonic()
            deliveries = common.Deliveries(f"http://127.0.0.1:{web_port}/hooks/{token}/")
            deliveries.deliver([f"order-{n}" for n in range(runs)])
            run_ids = deliveries.run_ids()
            kill_log = _kill_loop(supervisor, kills, port, run_ids)
            last_kill = time.monotonic()
            last_kill_at = clock_now()
            pending = len(run_ids) - common.settled_count(run_ids)
            rate = max(len(run_ids) - pending, 1) / max(last_kill - began, 0.1)
            figures = common.wait_until_settled(run_ids, last_kill, stuck_after)
            figures["queued_at_end"] = common.queue_length(f"redis://127.0.0.1:{redis_port}/0")
        report = common.payments_call(api, "/report")
        if timelines:
            from bench.timelines import print_late

            print(
                f"timelines (seconds after the last kill, kills at "
                f"{[round(k['at'] - kill_log[-1]['at'], 2) for k in kill_log]}):"
            )
            print_late(run_ids, last_kill_at, timelines)
    finally:
        payments.send_signal(signal.SIGTERM)
        redis.send_signal(signal.SIGTERM)
    figures.pop("rows")
    figures.update(
        runs=runs,
        sent=deliveries.sent,
        accepted=len(deliveries.accepted),
        lost=deliveries.lost(),
        duplicate_effects=len(report["duplicates"]),
        kills=len(kill_log),
        kills_in_effect=sum(1 for k in kill_log if k["in_effect"]),
        kills_main=sum(1 for k in kill_log if k["target"] == "main"),
        restarts=supervisor.services["worker"].restarts,
        charges=report["charges"],
        late_answers=report["late_answers"],
        # README: a crashed step is picked up within its lease plus one
        # sweep, a message a killed worker took with it within the re-send
        # interval plus one sweep; then what was still queued drains at the
        # drill's own rate.
        pending_at_last_kill=pending,
        deadline_s=round(max(lease, REDISPATCH_SECONDS) + SWEEP_SECONDS + pending / rate, 1),
    )
    figures["other"] = figures["runs"] - figures["finished"] - figures["outcome_unknown"]
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
        done = common.settled_count(run_ids)
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
            os.kill(chosen, signal.SIGKILL)
        except ProcessLookupError:
            continue
        log.append({"target": target, "pid": chosen, "in_effect": in_effect, "at": time.time()})
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--unsafe", action="store_true", help="declare the charge unsafe")
    parser.add_argument("--unprotected", action="store_true",
                        help="switch the protection off: duplicates must show")  # fmt: skip
    parser.add_argument("--stuck-after", type=float, default=common.STUCK_AFTER_SECONDS)
    parser.add_argument(
        "--keep-db", action="store_true", help="keep the drill's database (its name is printed)"
    )
    parser.add_argument("--timelines", type=int, default=0, metavar="N",
                        help="print the timelines of the N runs that settled last, "
                             "or never, after the last kill")  # fmt: skip
    args = parser.parse_args()
    name = "drill_kill_unsafe" if args.unsafe else "drill_kill"
    started = time.monotonic()
    figures = run(args.runs, args.kills, args.unsafe, name, unprotected=args.unprotected,
                  stuck_after=args.stuck_after, keep_db=args.keep_db,
                  timelines=args.timelines)  # fmt: skip
    keys = ["runs", "accepted", "finished", "lost", "stuck", "duplicate_effects", "kills",
            "kills_in_effect", "recovery_s"]  # fmt: skip
    if args.unsafe:
        keys[3:3] = ["outcome_unknown", "other"]
    common.print_figures(name, figures, time.monotonic() - started, keys)


if __name__ == "__main__":
    main()
