"""What a webhook caller feels: a flow that answers its own webhook, driven
from outside by wrk through the real HTTP server, at concurrency 1, 8 and 32.

The flow is "webhook -> set two fields -> compute two more -> respond with
JSON" (all three steps pure, run inline), its trigger set to
``respond: respond_node``. Every request posts ``{"a":2,"b":3,"name":"bench"}``
and must get ``{"ok":true,"total":5,"doubled":10,"greeting":"hello bench"}``:
wrk's Lua ``response()`` hook checks every body.

Two platforms, each started as its users start it:
- ``pg``: PostgreSQL + Redis, the web and worker lines of platform/Procfile;
- ``embedded``: ``make run`` on a fresh data directory (SQLite, the
  filesystem broker, supervisord).

Each mode runs in its own process (Django is configured once per process).
After the load the bench waits for every run to end and checks that every
answered request made one succeeded run and nothing else ran, then verifies
the audit chain.

    python -m bench.webhook_flow [--seconds 20] [--warmup 3] [--modes pg,embedded]
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common

DATABASE = "ledgerflow_bench_webhook_flow"
# The Redis database is overridable, so that two benches on one machine do
# not flush each other's queues.
REDIS = os.environ.get("LEDGERFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
CONCURRENCY = (1, 8, 32)
BODY = {"a": 2, "b": 3, "name": "bench"}

GRAPH = {
    "nodes": [
        {"id": "hook", "type": "trigger.webhook", "config": {"respond": "respond_node"}},
        {"id": "set", "type": "transform", "config": {"fields": {
            "a": "{{ trigger.body.a }}", "b": "{{ trigger.body.b }}"}}},
        {"id": "compute", "type": "transform", "config": {"fields": {
            "total": "{{ steps.set.output.a + steps.set.output.b }}",
            "doubled": "{{ (steps.set.output.a + steps.set.output.b) * 2 }}",
            "greeting": "hello {{ trigger.body.name }}"}}},
        {"id": "answer", "type": "webhook.respond", "config": {"status": 200, "body": {
            "ok": True, "total": "{{ steps.compute.output.total }}",
            "doubled": "{{ steps.compute.output.doubled }}",
            "greeting": "{{ steps.compute.output.greeting }}"}}},
    ],
    "edges": [
        {"from": "hook", "to": "set"}, {"from": "set", "to": "compute"},
        {"from": "compute", "to": "answer"},
    ],
}  # fmt: skip

# Every thread counts the answers it checked; done() sums them and prints
# one line the bench parses. Field order in the JSON answer is not fixed, so
# each field is matched on its own.
WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = '{"a":2,"b":3,"name":"bench"}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) good = 0; bad = 0; sample = "" end

local function answer_ok(body)
  return body:find('"ok":%s*true') and body:find('"total":%s*5[,}%s]')
     and body:find('"doubled":%s*10[,}%s]') and body:find('"greeting":%s*"hello bench"')
end

function response(status, headers, body)
  if status == 200 and answer_ok(body) then good = good + 1
  else
    bad = bad + 1
    if sample == "" then sample = status .. " " .. string.sub(body, 1, 200) end
  end
end

function done(summary, latency, requests)
  local good, bad, sample = 0, 0, ""
  for _, t in ipairs(threads) do
    good = good + t:get("good"); bad = bad + t:get("bad")
    if sample == "" then sample = t:get("sample") end
  end
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d good=%d bad=%d socket_errors=%d p50_us=%d p95_us=%d p99_us=%d"
    .. " max_us=%d duration_us=%d\n",
    summary.requests, good, bad, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    summary.duration))
  if sample ~= "" then io.write("WRK_SAMPLE " .. sample .. "\n") end
end
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("webhook_flow: wrk is not installed (make bench installs it)")
    return found


def run_wrk(url: str, connections: int, seconds: float, script: Path) -> dict:
    threads, duration = min(connections, 2), f"{max(1, round(seconds))}s"
    argv = [wrk_binary(), "-t", str(threads), "-c", str(connections), "-d", duration,
            "--timeout", "30s", "-s", str(script), url]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    line = next((t for t in out.stdout.splitlines() if t.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    figures = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    sample = next((t for t in out.stdout.splitlines() if t.startswith("WRK_SAMPLE ")), "")
    figures["sample"] = sample[len("WRK_SAMPLE ") :]
    return figures


def procfile_commands() -> dict[str, str]:
    """The process lines of platform/Procfile, by name."""
    lines = (common.ROOT / "platform" / "Procfile").read_text().splitlines()
    found = {}
    for line in lines:
        if line and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            found[name.strip()] = command.strip()
    return found


def settle_and_count(flow_id: int, timeout: float = 120) -> dict:
    from runs.models import Run

    deadline = time.monotonic() + timeout
    while True:
        runs = Run.objects.filter(flow_id=flow_id)
        open_runs = runs.exclude(status__in=common.SETTLED_RUN).count()
        if open_runs == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return {
        "runs": runs.count(),
        "succeeded": runs.filter(status="succeeded").count(),
        "unsettled": open_runs,
    }


def chain_ok(env: dict) -> int:
    out = subprocess.run(
        [sys.executable, "manage.py", "verify_audit_chain"], cwd=common.ROOT, env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return int(out.returncode == 0)


def drive(url: str, seconds: float, warmup: float) -> tuple[dict, int]:
    """wrk at each concurrency after a warm-up; the figures, and how many
    requests may have been cut off in flight (at most one per connection
    per wrk invocation: they may still have started a run)."""
    script = Path(tempfile.mkdtemp(prefix="lf-wrk-")) / "check.lua"
    script.write_text(WRK_SCRIPT)
    results, cut_off = {}, 0
    for connections in CONCURRENCY:
        if warmup > 0:
            warm = run_wrk(url, connections, warmup, script)
            results.setdefault("warm_good", 0)
            results["warm_good"] += warm["good"]
            results.setdefault("warm_bad", 0)
            results["warm_bad"] += warm["bad"] + warm["socket_errors"]
            cut_off += connections
        results[connections] = run_wrk(url, connections, seconds, script)
        cut_off += connections
        print(f"  c={connections}: {json.dumps(results[connections])}", flush=True)
    return results, cut_off


def mode_figures(prefix: str, results: dict, counts: dict, cut_off: int, chain: int) -> dict:
    answered = results.get("warm_good", 0) + sum(results[c]["good"] for c in CONCURRENCY)
    bad = results.get("warm_bad", 0) + sum(
        results[c]["bad"] + results[c]["socket_errors"] for c in CONCURRENCY
    )
    figures = {}
    for c in CONCURRENCY:
        r = results[c]
        seconds = r["duration_us"] / 1e6
        figures[f"{prefix}_rps_{c}"] = round(r["good"] / seconds, 1)
        figures[f"{prefix}_p50_ms_{c}"] = round(r["p50_us"] / 1000, 1)
        figures[f"{prefix}_p95_ms_{c}"] = round(r["p95_us"] / 1000, 1)
        figures[f"{prefix}_max_ms_{c}"] = round(r["max_us"] / 1000, 1)
    # Every answered request made one succeeded run; a request wrk cut off
    # when its time was up may have made one more, never two.
    extra = counts["succeeded"] - answered
    figures[f"{prefix}_answered"] = answered
    figures[f"{prefix}_bad_answers"] = bad
    figures[f"{prefix}_runs_ok"] = int(
        0 <= extra <= cut_off and counts["runs"] == counts["succeeded"] and bad == 0
    )
    figures[f"{prefix}_chain_ok"] = chain
    return figures


def start_procfile(env: dict, port: int, logdir: Path) -> list[subprocess.Popen]:
    commands = procfile_commands()
    procs = []
    for name in ("web", "worker"):
        handle = open(logdir / f"{name}.log", "a")
        procs.append(
            subprocess.Popen(
                ["bash", "-c", "exec env " + commands[name]],
                cwd=common.ROOT,
                env={
                    **env,
                    "LEDGERFLOW_PORT": str(port),
                    "LOG_LEVEL": "WARNING",
                    "PATH": f"{common.ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
                },
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        )
    return procs


def stop_groups(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def run_pg(args) -> dict:
    database_url = common.drill_database(DATABASE)
    common.flush_redis(REDIS)
    env = common.platform_env(database_url, REDIS)
    common.setup_django(env)
    token, flow_id = common.create_webhook_flow("webhook-flow-bench", GRAPH)
    port = common.free_port()
    logdir = Path(tempfile.mkdtemp(prefix="lf-webhook-flow-"))
    procs = start_procfile(env, port, logdir)
    try:
        common.wait_for_http(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/hooks/{token}/"
        results, cut_off = drive(url, args.seconds, args.warmup)
        counts = settle_and_count(flow_id)
    finally:
        stop_groups(procs)
    return mode_figures("pg", results, counts, cut_off, chain_ok(env))


def run_embedded(args) -> dict:
    from bench.drill_embedded import Platform

    data_dir = Path(tempfile.mkdtemp(prefix="lf-webhook-flow-embedded-"))
    platform = Platform(data_dir, common.free_port(), common.free_port(), common.free_port())
    platform.start()
    try:
        for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
            os.environ.pop(name, None)
        os.environ.update(platform.env, LOG_LEVEL="WARNING")
        import django

        django.setup()
        token, flow_id = common.create_webhook_flow("webhook-flow-bench", GRAPH)
        url = f"{platform.base}/hooks/{token}/"
        results, cut_off = drive(url, args.seconds, args.warmup)
        counts = settle_and_count(flow_id)
    finally:
        left = platform.stop()
    figures = mode_figures("embedded", results, counts, cut_off, chain_ok(platform.env))
    figures["embedded_left_behind"] = left
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--modes", default="pg,embedded")
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # one mode, in a child process
    args = parser.parse_args()

    if args.mode:
        figures = run_pg(args) if args.mode == "pg" else run_embedded(args)
        print("MODE " + json.dumps(figures), flush=True)
        return

    wrk_binary()
    figures: dict = {}
    for mode in args.modes.split(","):
        argv = [sys.executable, "-m", "bench.webhook_flow", "--mode", mode,
                "--seconds", str(args.seconds), "--warmup", str(args.warmup)]  # fmt: skip
        print(f"webhook_flow: {mode} ...", flush=True)
        out = subprocess.run(argv, cwd=common.ROOT, capture_output=True, text=True)
        sys.stdout.write(out.stdout)
        line = next((t for t in out.stdout.splitlines() if t.startswith("MODE ")), None)
        if out.returncode != 0 or line is None:
            sys.stderr.write(out.stderr[-4000:])
            raise SystemExit(f"webhook_flow: the {mode} run failed")
        figures.update(json.loads(line[len("MODE ") :]))
    chain = int(all(v == 1 for k, v in figures.items() if k.endswith("_chain_ok")))
    runs_ok = int(all(v == 1 for k, v in figures.items() if k.endswith("_runs_ok")))
    shown = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"webhook_flow: {shown} runs_ok={runs_ok} chain_ok={chain}", flush=True)
    print(f"environment: {json.dumps(common.environment_facts())}")


if __name__ == "__main__":
    main()
