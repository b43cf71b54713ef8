"""Webhook intake benchmark: 1,000 deliveries carrying 50 distinct
Idempotency-Keys, sent concurrently to the ASGI app under uvicorn (as
`make run` serves it) against PostgreSQL + Redis. Reports accepted
deliveries per second and checks that exactly one run started per key.

    python -m bench.webhooks [--deliveries 1000] [--keys 50] [--concurrency 32]
"""

import argparse
import asyncio
import subprocess
import sys
import time

import httpx

from bench import common

DATABASE = "ledgerflow_bench_webhooks"
REDIS = "redis://127.0.0.1:6379/13"


def prepare() -> tuple[str, int]:
    """Migrate the bench database and publish one webhook flow; its token."""
    from django.contrib.auth.models import User

    from connectors.triggers.models import Binding
    from flows import services

    user = User.objects.create_user("bench", password="bench-password-unused")
    flow = services.flow_create(
        actor=user,
        data={
            "name": "Webhook bench",
            "slug": "webhook-bench",
            "owner": user,
            "runbook": "bench",
            "failure_mode": "bench",
        },
    )
    graph = {
        "nodes": [
            {"id": "hook", "type": "trigger.webhook"},
            {
                "id": "shape",
                "type": "transform",
                "config": {"fields": {"n": "{{ trigger.body.n }}"}},
            },
        ],
        "edges": [{"from": "hook", "to": "shape"}],
    }
    services.flow_save_draft(flow=flow, actor=user, graph=graph)
    services.flow_publish(flow=flow, actor=user)
    services.flow_transition(flow=flow, actor=user, action="activate")
    return Binding.objects.get(flow=flow).token, flow.pk


def start_web(env: dict, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ],
        cwd=common.ROOT,
        env={**env, "LEDGERFLOW_PROCESS": "web"},  # as platform/Procfile runs it
        start_new_session=True,
    )
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("uvicorn did not start")


async def deliver_all(url: str, deliveries: int, keys: int, concurrency: int) -> dict:
    limit = asyncio.Semaphore(concurrency)
    statuses: dict[int, int] = {}
    runs_per_key: dict[str, set] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(index: int) -> None:
            key = f"delivery-{index % keys}"
            async with limit:
                response = await client.post(
                    url, json={"n": index}, headers={"Idempotency-Key": key}
                )
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code in (200, 202):
                runs_per_key.setdefault(key, set()).add(response.json()["run_id"])

        began = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(deliveries)))
        elapsed = time.monotonic() - began
    return {"statuses": statuses, "runs_per_key": runs_per_key, "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    database_url = common.fresh_database(DATABASE)
    common.flush_redis(REDIS)
    env = common.platform_env(database_url, REDIS)
    common.setup_django(env)
    token, flow_id = prepare()
    port = common.free_port()
    web = start_web(env, port)
    try:
        url = f"http://127.0.0.1:{port}/hooks/{token}/"
        result = asyncio.run(deliver_all(url, args.deliveries, args.keys, args.concurrency))
    finally:
        web.terminate()
        web.wait(timeout=10)

    from runs.models import Run

    runs = Run.objects.filter(flow_id=flow_id).count()
    accepted = sum(n for status, n in result["statuses"].items() if status in (200, 202))
    split = sum(1 for ids in result["runs_per_key"].values() if len(ids) != 1)
    print(
        f"answers: {dict(sorted(result['statuses'].items()))}; keys answered with more than"
        f" one run id: {split}; {result['seconds']:.2f}s"
    )
    print(
        f"webhooks: deliveries={args.deliveries} keys={args.keys} runs={runs}"
        f" deliveries_per_s={accepted / result['seconds']:.0f}"
    )


if __name__ == "__main__":
    main()
