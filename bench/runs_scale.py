"""The runs list at a million runs: loads 1,000,000 runs (3 steps each, 50
flows, spread over 90 days) into PostgreSQL with COPY, then times the runs
list over HTTP as a logged-in operator sees it, through the web process as
platform/Procfile starts it:

- the first page;
- a deep page (a keyset cursor half-way back);
- a filtered search (a flow by name and text in the input: a customer);
- a business-key lookup (an order id).

Each is asked ``--requests`` times after a warm-up; the figures are p95
milliseconds. The list never counts exactly past 10,000, so no request
counts a million rows. Loading takes minutes: ``--reuse`` keeps a loaded
database (``ledgerflow_bench_scale``) from an earlier run.

    python -m bench.runs_scale [--runs 1000000] [--requests 40] [--reuse]
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench import common

DATABASE = "ledgerflow_bench_scale"
REDIS = "redis://127.0.0.1:6379/11"
FLOWS = 50
DAYS = 90
STEP_NODES = [("shape", "transform"), ("charge", "http.request"), ("notify", "email.send")]
STATUS_MIX = [("succeeded", 90), ("failed", 6), ("running", 2), ("cancelled", 2)]


def database_url() -> str:
    return f"postgres://postgres@127.0.0.1:5432/{DATABASE}"


def loaded_runs(url: str) -> int:
    try:
        with psycopg.connect(url) as conn:
            return conn.execute("SELECT count(*) FROM runs_run").fetchone()[0]
    except psycopg.Error:
        return 0


def make_flows() -> list[tuple[int, str]]:
    """50 published flows, made by the services as an operator would."""
    from django.contrib.auth.models import User

    from flows import services

    actor, _ = User.objects.get_or_create(username="scale")
    graph = {
        "nodes": [{"id": "hook", "type": "trigger.webhook"}]
        + [{"id": node, "type": "transform", "config": {"fields": {"x": "1"}}}
           for node, _ in STEP_NODES],
        "edges": [{"from": "hook", "to": "shape"}, {"from": "shape", "to": "charge"},
                  {"from": "charge", "to": "notify"}],
    }  # fmt: skip
    flows = []
    for n in range(FLOWS):
        flow = services.flow_create(
            actor=actor,
            data={"name": f"Order flow {n:02d}", "slug": f"order-flow-{n:02d}", "owner": actor,
                  "runbook": "bench", "failure_mode": "bench"},
        )  # fmt: skip
        services.flow_save_draft(flow=flow, actor=actor, graph=graph)
        services.flow_publish(flow=flow, actor=actor)
        flows.append((flow.pk, flow.name))
    return flows


def _columns(model) -> list:
    return [f for f in model._meta.concrete_fields]


def _value(field, given: dict):
    """The value COPY writes for ``field``: what the row gives, else the
    field's default (so a column added later still loads)."""
    if field.attname in given:
        value = given[field.attname]
    elif field.has_default():
        value = field.get_default()
    elif field.null:
        value = None
    elif field.get_internal_type() in ("CharField", "TextField"):
        value = ""
    else:
        raise RuntimeError(f"bench: no value for {field.attname}")
    if field.get_internal_type() == "JSONField" and value is not None:
        return json.dumps(value)
    return value


def load(total: int, flows: list[tuple[int, str]], seed: int = 7) -> float:
    """COPY ``total`` runs and their steps; seconds taken."""
    from django.db import connection

    from runs.models import Run, Step

    rng = random.Random(seed)
    now = datetime.now(UTC)
    run_fields, step_fields = _columns(Run), _columns(Step)
    statuses = [s for s, weight in STATUS_MIX for _ in range(weight)]
    began = time.monotonic()
    connection.ensure_connection()
    raw = connection.connection
    run_cols = ", ".join(f'"{f.column}"' for f in run_fields)
    step_cols = ", ".join(f'"{f.column}"' for f in step_fields if f.attname != "id")
    with raw.cursor() as cur:
        with cur.copy(f"COPY runs_run ({run_cols}) FROM STDIN") as copy:
            for run_id in range(1, total + 1):
                flow_id, _ = flows[run_id % FLOWS]
                created = now - timedelta(seconds=rng.uniform(0, DAYS * 86400))
                status = statuses[rng.randrange(len(statuses))]
                finished = None if status == "running" else created + timedelta(seconds=2)
                order = f"A-{run_id}"
                row = {
                    "id": run_id, "flow_id": flow_id, "version_number": 1, "status": status,
                    "input": {"order_id": order, "customer": f"customer-{run_id % 50000}",
                              "amount": run_id % 997},
                    "started_by": "webhook", "created_at": created,
                    "updated_at": finished or created, "finished_at": finished,
                    "root_run_id": run_id, "lineage_id": run_id, "business_key": order,
                }  # fmt: skip
                copy.write_row([_value(f, row) for f in run_fields])
        rng = random.Random(seed)
        with cur.copy(f"COPY runs_step ({step_cols}) FROM STDIN") as copy:
            for run_id in range(1, total + 1):
                for position, (node, connector) in enumerate(STEP_NODES):
                    row = {"run_id": run_id, "node_id": node, "position": position,
                           "connector": connector, "status": "succeeded", "attempt": 1,
                           "output": {"ok": True}}  # fmt: skip
                    copy.write_row([_value(f, row) for f in step_fields if f.attname != "id"])
        cur.execute("SELECT setval('runs_run_id_seq', %s)", [total])
    raw.commit()
    with raw.cursor() as cur:
        raw.autocommit = True
        cur.execute("VACUUM ANALYZE runs_run")
        cur.execute("VACUUM ANALYZE runs_step")
    return time.monotonic() - began


def operator_cookie() -> str:
    """A session of an operator, as the login page would make it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore

    from config.roles import OPERATOR

    user, _ = User.objects.get_or_create(username="scale-operator")
    user.groups.add(Group.objects.get(name=OPERATOR))
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]  # ModelBackend
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def deep_cursor() -> str:
    from runs.models import Run
    from runs.selectors import encode_cursor

    total = Run.objects.count()
    run = Run.objects.order_by("-created_at", "-id")[total // 2]
    return encode_cursor(run)


def timed(client, url: str, params: dict, requests: int) -> tuple[float, int]:
    for _ in range(3):
        client.get(url, params=params)
    samples = []
    rows = 0
    for _ in range(requests):
        began = time.perf_counter()
        response = client.get(url, params=params)
        samples.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"bench: {response.status_code} for {params}")
        rows = response.text.count('data-run="')
    return statistics.quantiles(samples, n=20)[18], rows


def start_web(env: dict, port: int) -> subprocess.Popen:
    from bench.webhook_flow import procfile_commands

    log = open(Path(tempfile.mkdtemp(prefix="lf-scale-")) / "web.log", "a")
    return subprocess.Popen(
        ["bash", "-c", "exec env " + procfile_commands()["web"]], cwd=common.ROOT,
        env={**env, "LEDGERFLOW_PORT": str(port),
             "PATH": f"{common.ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()

    url = database_url()
    reuse = args.reuse and loaded_runs(url) == args.runs
    if not reuse:
        common.fresh_database(DATABASE)
    env = common.platform_env(url, REDIS)
    common.setup_django(env)
    load_s = 0.0
    if not reuse:
        load_s = load(args.runs, make_flows())
        print(f"loaded {args.runs} runs and {3 * args.runs} steps in {load_s:.0f} s", flush=True)

    import httpx

    cookie, cursor = operator_cookie(), deep_cursor()
    port = common.free_port()
    web = start_web(env, port)
    try:
        base = f"http://127.0.0.1:{port}"
        common.wait_for_http(f"{base}/healthz")
        with httpx.Client(base_url=base, cookies={"sessionid": cookie}, timeout=60) as client:
            page = "/runs/"
            target = args.runs // 3
            scenarios = {
                "first": {},
                "deep": {"after": cursor},
                # A customer's runs, found by text in the input within their flow.
                "filtered": {"flow": f"Order flow {target % FLOWS:02d}",
                             "q": f"customer-{target % 50000}"},
                "key": {"key": f"A-{target}"},
            }  # fmt: skip
            figures = {}
            for name, params in scenarios.items():
                p95, rows = timed(client, page, params, args.requests)
                figures[name] = (p95, rows)
                print(f"  {name}: p95 {p95:.1f} ms, {rows} rows on the page", flush=True)
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=15)
    print(
        f"runs_list: runs={args.runs} p95_ms_first={figures['first'][0]:.1f}"
        f" p95_ms_deep={figures['deep'][0]:.1f} p95_ms_filtered={figures['filtered'][0]:.1f}"
        f" p95_ms_key={figures['key'][0]:.1f}" + (f" load_s={load_s:.0f}" if load_s else "")
    )
    print(f"environment: {json.dumps(common.environment_facts())}")


if __name__ == "__main__":
    main()
