"""Engine benchmark against the floor, on PostgreSQL + Redis, default
durability, two prefork worker processes. Closed loop: a new run starts when
one finishes; 5 s of warm-up are discarded; each point lasts at least
``--seconds`` or ``--max-runs`` runs.

- The side-effecting flow is three ``http.request`` POSTs to the fake
  payments API (a real local server), paying the outbound guard, the breaker
  and the rate limit as production steps do; the floor makes the same POST
  in each of its steps.
- The pure flow runs inline in whoever starts it, so its "in flight" points
  are that many concurrent starters: threads spread over up to four starter
  processes (``--starter``), each starting a run and waiting for it.
- The sequential 40-step chain measures the engine's overhead per step.
 Raw per-run latencies and the
environment go to bench/out/engine.json; the printed figures are recomputed
from that file.

    python -m bench.engine [--seconds 60] [--max-runs 2000] [--rounds 3]
"""

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import common
from bench.supervisor import Service, Supervisor

OUT = common.ROOT / "bench" / "out" / "engine.json"
TERMINAL = ["succeeded", "failed", "cancelled"]


def work(node_id: str, ms: float = 0) -> dict:
    return {"id": node_id, "type": "cpu.work", "config": {"milliseconds": ms}}


def charge(node_id: str, charges_url: str) -> dict:
    return {"id": node_id, "type": "http.request", "config": {
        "method": "POST", "url": charges_url, "honours_idempotency_key": True,
        "json_body": {"order_id": "bench-{{ trigger.n }}", "amount": 1}}}  # fmt: skip


def flows(charges_url: str) -> dict[str, dict]:
    trigger = {"id": "start", "type": "trigger.manual"}

    def linear(nodes):
        chain = [trigger, *nodes]
        return {
            "nodes": chain,
            "edges": [
                {"from": a["id"], "to": b["id"]} for a, b in zip(chain, chain[1:], strict=False)
            ],
        }

    positive = "{{ steps.shape.output.n > 0 }}"
    pure = linear(
        [
            {
                "id": "shape",
                "type": "transform",
                "config": {"fields": {"n": "{{ trigger.n + 1 }}"}},
            },
            {"id": "check", "type": "branch", "config": {"condition": positive}},
        ]
    )
    pure["nodes"].append({"id": "done", "type": "transform", "config": {"fields": {"ok": True}}})
    pure["edges"].append({"from": "check", "from_port": "true", "to": "done"})
    return {
        "bench-pure": pure,
        "bench-effects": linear([charge(f"c{i}", charges_url) for i in (1, 2, 3)]),
        "bench-sequential": linear([work(f"s{i}", 10) for i in range(40)]),
    }


def closed_loop(start, finished, in_flight: int, seconds: float, max_runs: int, warmup: float):
    """Latency is what a client sees: from asking for the run to seeing it
    done (polling every few ms), the same for the engine and the floor."""
    pending: dict[int, float] = {}
    latencies: list[float] = []
    began = time.monotonic()
    measure_from = began + warmup
    while True:
        while len(pending) < in_flight:
            pending[start()] = time.monotonic()
        done = finished(list(pending))
        now = time.monotonic()
        for key in done:
            began_at = pending.pop(key)
            if now >= measure_from:
                latencies.append((now - began_at) * 1000)
        # A point needs at least one measured run: on a loaded machine a
        # short point could otherwise end before anything finished.
        enough = now - measure_from >= seconds or len(latencies) >= max_runs
        if now >= measure_from and enough and latencies:
            return latencies, now - measure_from
        if not done:
            time.sleep(0.002)


def engine_runner(flow):
    from runs import driver
    from runs.models import Run

    def start() -> int:
        return driver.start_run(flow=flow, input={"n": 1}, actor="system:bench").pk

    def finished(ids):
        rows = Run.objects.filter(pk__in=ids, status__in=TERMINAL).values_list(
            "pk", "created_at", "finished_at", "status"
        )
        result = {}
        for pk, created, done, status in rows:
            if status != "succeeded":
                raise RuntimeError(f"bench run {pk} ended {status}")
            result[pk] = (done - created).total_seconds() * 1000
        return result

    return start, finished


def floor_runner(steps: int, url: str):
    from bench import floor

    counter = iter(range(1, 10**9))

    def start() -> int:
        chain = next(counter) + int(time.time() * 1000) * 1000
        floor.start_chain(chain, steps, url)
        return chain

    return start, floor.finished


def point(system: str, in_flight: int, runner, steps: int, args, round_=0) -> dict:
    start, finished = runner
    latencies, seconds = closed_loop(
        start, finished, in_flight, args.seconds, args.max_runs, args.warmup
    )
    result = {
        "system": system,
        "in_flight": in_flight,
        "round": round_,
        "steps_per_run": steps,
        "seconds": seconds,
        "latencies_ms": latencies,
    }
    print(
        f"  {system:<12} in flight {in_flight:>3}  round {round_}: {len(latencies)} runs, "
        f"{len(latencies) * steps / seconds:8.1f} steps/s, p50 {_p50(latencies):7.1f} ms",
        flush=True,
    )
    return result


STARTER_PROCESSES = 4


def concurrent_point(system: str, in_flight: int, slug: str, steps: int, args) -> dict:
    """``in_flight`` concurrent starters of ``slug``'s runs: threads spread
    over up to four processes (one interpreter's lock would serialise
    them), each a closed loop of its own."""
    processes = min(in_flight, STARTER_PROCESSES)
    per_process = [in_flight // processes + (i < in_flight % processes) for i in range(processes)]
    command = [sys.executable, "-m", "bench.engine", "--starter", slug,
               "--seconds", str(args.seconds), "--warmup", str(args.warmup),
               "--max-runs", str(math.ceil(args.max_runs / processes))]  # fmt: skip
    starters = [
        subprocess.Popen(
            [*command, "--threads", str(n)],
            cwd=common.ROOT,
            env=os.environ,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for n in per_process
    ]
    results = []
    for proc in starters:
        out, _ = proc.communicate(timeout=args.seconds + args.warmup + 300)
        if proc.returncode != 0:
            raise RuntimeError(f"a starter process failed ({proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    latencies = [ms for r in results for ms in r["latencies_ms"]]
    seconds = max(r["seconds"] for r in results)
    print(
        f"  {system:<12} in flight {in_flight:>3}: {len(latencies)} runs, "
        f"{len(latencies) * steps / seconds:8.1f} steps/s, p50 {_p50(latencies):7.1f} ms",
        flush=True,
    )
    return {"system": system, "in_flight": in_flight, "round": 0, "steps_per_run": steps,
            "seconds": seconds, "latencies_ms": latencies}  # fmt: skip


def starter(slug: str, threads: int, seconds: float, warmup: float, max_runs: int) -> None:
    """One starter process: ``threads`` closed loops, each starting a run
    and waiting for it to finish; prints its latencies as one JSON line."""
    import django

    django.setup()
    from django.db import connection

    from flows.models import Flow

    flow = Flow.objects.get(slug=slug)
    latencies: list[float] = []
    lock = threading.Lock()
    began = time.monotonic()
    measure_from, stop_at = began + warmup, began + warmup + seconds

    def loop() -> None:
        start, finished = engine_runner(flow)
        try:
            while time.monotonic() < stop_at and len(latencies) < max_runs:
                t0 = time.monotonic()
                pk = start()
                while not finished([pk]):
                    time.sleep(0.002)
                if t0 >= measure_from:
                    with lock:
                        latencies.append((time.monotonic() - t0) * 1000)
        finally:
            connection.close()

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    measured = min(time.monotonic(), stop_at) - measure_from
    print(json.dumps({"latencies_ms": latencies, "seconds": max(measured, 1e-3)}), flush=True)


def sequential(flow, repetitions: int) -> dict:
    from runs import driver
    from runs.models import Run, Step

    totals, computes = [], []
    for index in range(repetitions + 1):
        run = driver.start_run(flow=flow, input={}, actor="system:bench")
        # The run's own timestamps give its duration, so polling slowly costs
        # no precision, and leaves the two cores to the workers.
        while not Run.objects.filter(pk=run.pk, status__in=TERMINAL).exists():
            time.sleep(0.05)
        run.refresh_from_db()
        if index == 0:
            continue  # warm-up
        total = (run.finished_at - run.created_at).total_seconds() * 1000
        compute = sum(
            s.output["cpu_ms"] for s in Step.objects.filter(run=run, connector="cpu.work")
        )
        totals.append(total)
        computes.append(compute)
    return {"steps": 40, "totals_ms": totals, "compute_ms": computes}


def _p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def figures(data: dict) -> dict:
    """Every printed figure, computed from the saved file."""

    def rate(system, n):
        points = [p for p in data["points"] if p["system"] == system and p["in_flight"] == n]
        rates = [len(p["latencies_ms"]) * p["steps_per_run"] / p["seconds"] for p in points]
        return statistics.median(rates) if rates else float("nan")

    def p50(system, n):
        lat = [ms for p in data["points"] if p["system"] == system and p["in_flight"] == n
               for ms in p["latencies_ms"]]  # fmt: skip
        return _p50(lat)

    seq = data["sequential"]
    overheads = [
        (t - c) / seq["steps"] for t, c in zip(seq["totals_ms"], seq["compute_ms"], strict=True)
    ]
    out = {
        "steps_per_s_1": rate("engine", 1),
        "steps_per_s_16": rate("engine", 16),
        "steps_per_s_128": rate("engine", 128),
        "floor_steps_per_s_16": rate("floor", 16),
        "p50_ms_1": p50("engine", 1),
        "floor_p50_ms_1": p50("floor", 1),
        "seq_total_ms": _p50(seq["totals_ms"]),
        "seq_overhead_ms": _p50(overheads),
        "pure_steps_per_s_1": rate("engine_pure", 1),
        "pure_steps_per_s_16": rate("engine_pure", 16),
        "pure_steps_per_s_128": rate("engine_pure", 128),
        "pure_p50_ms_1": p50("engine_pure", 1),
    }
    floor = out["floor_steps_per_s_16"]
    out["floor_ratio_16"] = out["steps_per_s_16"] / floor if floor else float("nan")
    return out


def report(path: Path) -> None:
    data = json.loads(path.read_text())
    f = figures(data)
    print(
        "\nEngine benchmark (" + ", ".join(f"{k} {v}" for k, v in data["environment"].items()) + ")"
    )
    print(
        f"  side-effecting 3-step flow: {f['steps_per_s_16']:.0f} steps/s at 16 in flight "
        f"(floor {f['floor_steps_per_s_16']:.0f}, ratio {f['floor_ratio_16']:.2f}); "
        f"p50 {f['p50_ms_1']:.1f} ms at 1 (floor {f['floor_p50_ms_1']:.1f} ms)"
    )
    print(
        f"  pure 3-step flow: {f['pure_steps_per_s_1']:.0f} / {f['pure_steps_per_s_16']:.0f} / "
        f"{f['pure_steps_per_s_128']:.0f} steps/s at 1 / 16 / 128; p50 {f['pure_p50_ms_1']:.1f} ms"
    )
    print(f"  sequential 40 x 10 ms: {f['seq_total_ms']:.0f} ms total, "
          f"{f['seq_overhead_ms']:.1f} ms overhead per step")  # fmt: skip
    print(
        f"engine: steps_per_s_16={f['steps_per_s_16']:.1f} "
        f"floor_steps_per_s_16={f['floor_steps_per_s_16']:.1f} "
        f"floor_ratio_16={f['floor_ratio_16']:.2f} p50_ms_1={f['p50_ms_1']:.1f} "
        f"floor_p50_ms_1={f['floor_p50_ms_1']:.1f} seq_overhead_ms={f['seq_overhead_ms']:.1f}"
    )
    print(
        f"engine_pure: steps_per_s_1={f['pure_steps_per_s_1']:.1f} "
        f"steps_per_s_16={f['pure_steps_per_s_16']:.1f} "
        f"steps_per_s_128={f['pure_steps_per_s_128']:.1f} p50_ms_1={f['pure_p50_ms_1']:.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds discarded per point")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--starter", metavar="SLUG", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.starter:
        starter(args.starter, args.threads, args.seconds, args.warmup, args.max_runs)
        return

    # A database of this process's own, and an overridable Redis database:
    # two benches on one machine must not drop or flush each other's.
    database = common.drill_database("ledgerflow_bench")
    redis_url = os.environ.get("LEDGERFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
    common.flush_redis(redis_url)
    port = common.free_port()
    payments = common.start_payments(port, (0, 0))
    charges_url = f"http://127.0.0.1:{port}/charges"
    allow = f"127.0.0.1:{port}"
    env = common.platform_env(database, redis_url, LEDGERFLOW_OUTBOUND_ALLOWLIST=allow)
    common.setup_django(env)
    from django.contrib.auth.models import User

    from bench import floor
    from flows import services

    floor.create_tables()
    actor = User.objects.create_user("bench")
    published = {}
    for slug, graph in flows(charges_url).items():
        flow = services.flow_create(
            actor=actor, data={"name": slug, "slug": slug, "tags": [], "external_systems": []}
        )
        services.flow_save_draft(flow=flow, actor=actor, graph=graph)
        services.flow_publish(flow=flow, actor=actor)
        published[slug] = common.put_in_service(flow, actor)

    logdir = Path(env["LEDGERFLOW_DATA_DIR"])
    py = sys.executable
    services_ = [
        Service("worker", [py, "-m", "celery", "-A", "config", "worker", "--concurrency", "2",
                           "--loglevel", "WARNING", "--without-mingle", "--without-gossip",
                           "--include", "bench.floor"], env, logdir / "worker.log"),
        Service("beat", [py, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING",
                         "--schedule", str(logdir / "beat-schedule")], env, logdir / "beat.log"),
    ]  # fmt: skip
    data = {"environment": common.environment_facts(), "points": []}
    try:
        run_points(services_, published, charges_url, args, data)
    finally:
        payments.send_signal(signal.SIGTERM)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data))
    report(args.out)


def run_points(services_, published: dict, charges_url: str, args, data: dict) -> None:
    with Supervisor(services_):
        time.sleep(3)
        effects = engine_runner(published["bench-effects"])
        for n in (1, 16, 128):
            rounds = args.rounds if n == 16 else 1
            for r in range(rounds):
                data["points"].append(point("engine", n, effects, 3, args, r))
                floor = floor_runner(3, charges_url)
                data["points"].append(point("floor", n, floor, 3, args, r))
        for n in (1, 16, 128):
            data["points"].append(concurrent_point("engine_pure", n, "bench-pure", 3, args))
        data["sequential"] = sequential(published["bench-sequential"], args.repetitions)


if __name__ == "__main__":
    main()
