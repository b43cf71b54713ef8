"""Unsafe time-out drill: a remote that ignores Idempotency-Key, answers some
charges only after the client has given up (the charge made), and now and
then refuses connections (its listener closes for a while: nothing listens).

Orders arrive through the flow's webhook; the charge is declared unsafe (the
remote does not honour the key). No worker is killed: every unknown outcome
here comes from a time-out. What must hold:

- ``duplicate_effects=0``: no order is charged twice;
- every run succeeded or is an outcome-unknown dead letter (``other=0``);
- a refused connection proves nothing was sent, so those charges are retried
  and succeed: ``retried_safely`` (runs whose charge failed unsent at least
  once and then succeeded) is above 0.

``--unprotected`` has the platform treat the unsafe charge as safe
(``LEDGERFLOW_DRILL_RERUN_UNSAFE_STEPS``): late answers are then retried and
``duplicate_effects`` must be above 0.

    python -m bench.drill_unsafe_timeout [--runs 200] [--unprotected]
"""

import argparse
import signal
import time

from bench import common
from bench.drill_kill import CHARGE_TIMEOUT, drill_env, order_graph, worker_services
from bench.supervisor import Supervisor

LATE_FRACTION = 0.1
# The listener is up this long (or for this many charges, so that a burst
# processed inside one up window still meets refusals), then down
# (connections refused) this long.
REFUSE = {"up_seconds": 2.0, "down_seconds": 0.6, "every_charges": 6}


def run(runs: int, *, unprotected: bool = False,
        stuck_after: float = common.STUCK_AFTER_SECONDS) -> dict:  # fmt: skip
    name = "drill_unsafe_timeout" + ("_unprotected" if unprotected else "")
    redis_port = common.free_port()
    redis = common.start_redis(redis_port)
    env = drill_env(name, f"redis://127.0.0.1:{redis_port}/0", rerun_unsafe=unprotected)
    common.setup_django(env)
    from pathlib import Path

    port = common.free_port()
    payments = common.start_payments(port, (50, 200))
    api = f"http://127.0.0.1:{port}"
    common.payments_control(api, {"honour_keys": False, "late_fraction": LATE_FRACTION,
                                  "late_next": 2, "late_seconds": CHARGE_TIMEOUT + 1})  # fmt: skip
    env["LEDGERFLOW_OUTBOUND_ALLOWLIST"] = f"127.0.0.1:{port}"
    logdir = Path(env["LEDGERFLOW_DATA_DIR"])
    web_port = common.free_port()
    try:
        token, _ = common.create_webhook_flow("drill-orders", order_graph(api, unsafe=True))
        services = [common.web_service(env, web_port, logdir), *worker_services(env, logdir)]
        with Supervisor(services):
            common.wait_for_http(f"http://127.0.0.1:{web_port}/healthz")
            time.sleep(2)
            common.payments_control(api, {"refuse": REFUSE})
            deliveries = common.Deliveries(f"http://127.0.0.1:{web_port}/hooks/{token}/")
            deliveries.deliver([f"order-{n}" for n in range(runs)], concurrency=4,
                               pace=spread(runs) / max(runs, 1))  # fmt: skip
            run_ids = deliveries.run_ids()
            # Refusals stop once most runs are through; the rest finish on a
            # remote that only answers late now and then.
            until = time.monotonic() + stuck_after
            while common.settled_count(run_ids) < 0.8 * len(run_ids) and time.monotonic() < until:
                time.sleep(0.25)
            common.payments_control(api, {"refuse": None}, seconds=30)
            since = time.monotonic()
            figures = common.wait_until_settled(run_ids, since, stuck_after)
            figures["queued_at_end"] = common.queue_length(f"redis://127.0.0.1:{redis_port}/0")
            figures["retried_safely"] = retried_safely(run_ids)
        report = common.payments_report(api)
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
        charges=report["charges"],
        late_answers=report["late_answers"],
    )
    figures["other"] = figures["runs"] - figures["finished"] - figures["outcome_unknown"]
    return figures


def spread(runs: int) -> float:
    """Seconds over which the deliveries arrive: several refusal windows,
    0.1 s per order, at most 8 s."""
    return min(8.0, max(3.0, 0.1 * runs))


def retried_safely(run_ids: list[int]) -> int:
    """Succeeded runs whose charge failed at least once with proof that
    nothing was sent (and so was retried)."""
    from runs.ground.models import Event
    from runs.models import Run

    streams = set(
        Event.objects.filter(
            type="step.attempt_failed",
            payload__node="charge",
            payload__may_have_been_sent=False,
        ).values_list("stream", flat=True)
    )
    succeeded = Run.objects.filter(pk__in=run_ids, status="succeeded").values_list("pk", flat=True)
    return sum(1 for pk in succeeded if f"run:{pk}" in streams)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--unprotected", action="store_true",
                        help="treat the unsafe charge as safe: duplicates must show")  # fmt: skip
    parser.add_argument("--stuck-after", type=float, default=common.STUCK_AFTER_SECONDS)
    args = parser.parse_args()
    started = time.monotonic()
    figures = run(args.runs, unprotected=args.unprotected, stuck_after=args.stuck_after)
    keys = ["runs", "accepted", "finished", "outcome_unknown", "other", "lost", "stuck",
            "duplicate_effects", "retried_safely", "late_answers"]  # fmt: skip
    common.print_figures("drill_unsafe_timeout", figures, time.monotonic() - started, keys)


if __name__ == "__main__":
    main()
