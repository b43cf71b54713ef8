"""Where a webhook delivery's time goes, in one process, without HTTP: the
webhook flow of bench/webhook_flow.py delivered ``--runs`` times through
``webhook_receiver.find``/``accept`` (the view's two calls), on a fresh
PostgreSQL database.

It prints the SQL statements of one delivery (what they are and how many),
the mean time per delivery, and, with ``--profile``, a pyinstrument profile
of the deliveries (pyinstrument is not a dependency: install it to use it).

    python -m bench.profile_webhook [--runs 200] [--profile] [--sql]
"""

import argparse
import os
import time
from collections import Counter

from bench import common
from bench.webhook_flow import BODY, GRAPH

DATABASE = "ledgerflow_bench_profile_webhook"


def deliver(token: str):
    import json

    from django.http import QueryDict

    from connectors.triggers import webhook_receiver

    hook = webhook_receiver.find(token)
    headers = {"Content-Type": "application/json"}
    return webhook_receiver.accept(
        hook, body=json.dumps(BODY).encode(), content_type="application/json",
        headers=headers, query=QueryDict(""), signature_now=time.time(),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sql", action="store_true", help="print each statement of one delivery")
    args = parser.parse_args()

    redis_url = os.environ.get("LEDGERFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    env = common.platform_env(common.drill_database(DATABASE), redis_url)
    common.setup_django(env)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    token, _ = common.create_webhook_flow("profile-webhook", GRAPH)
    for _ in range(20):  # warm caches, as a serving process is
        deliver(token)

    with CaptureQueriesContext(connection) as queries:
        outcome = deliver(token)
    assert outcome.status == "started", outcome
    kinds = Counter(q["sql"].split()[0] for q in queries.captured_queries)
    print(f"statements per delivery: {len(queries.captured_queries)} {dict(kinds)}")
    if args.sql:
        for q in queries.captured_queries:
            print(f"  {q['time']}s  {q['sql'][:160]}")

    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.runs):
        deliver(token)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    print(
        f"profile_webhook: runs={args.runs} ms_per_delivery={elapsed / args.runs * 1000:.2f}"
        f" cpu_ms_per_delivery={cpu / args.runs * 1000:.2f}"
    )


if __name__ == "__main__":
    main()
