"""The floor: the cheapest honest way to run a durable step on this stack.

Each step is one Celery task that (given a URL) makes the same keyed POST
the engine's side-effecting step makes, inserts one event-shaped row
(canonical body, SHA-256 hash, the event table's unique and secondary
indexes) in its own transaction and then sends the next task. Same broker, database
settings, acks_late, prefetch 1 and ignore_result as the engine. Written
before the engine was measured against it, and not tuned since.
"""

import hashlib
import json

import httpx
from celery import shared_task
from django.db import connection, transaction

from runs.ground import clock

DDL = """
DROP TABLE IF EXISTS bench_floor_event;
DROP TABLE IF EXISTS bench_floor_done;
CREATE TABLE bench_floor_event (
    id bigserial PRIMARY KEY,
    stream varchar(200) NOT NULL,
    seq bigint NOT NULL,
    type varchar(100) NOT NULL,
    payload jsonb NOT NULL,
    actor varchar(200) NOT NULL,
    occurred_at timestamptz NOT NULL,
    prev_hash varchar(64) NOT NULL,
    hash varchar(64) NOT NULL UNIQUE,
    body text NOT NULL,
    UNIQUE (stream, seq)
);
CREATE INDEX bench_floor_event_type ON bench_floor_event (type);
CREATE INDEX bench_floor_event_at ON bench_floor_event (occurred_at);
CREATE TABLE bench_floor_done (
    chain bigint PRIMARY KEY,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL
);
"""


def create_tables() -> None:
    with connection.cursor() as cursor:
        cursor.execute(DDL)


@shared_task(name="bench.floor_step")
def floor_step(
    chain: int, step: int, total: int, started_at: str, prev: str, url: str = ""
) -> None:
    if url:  # the remote call a side-effecting step pays, on a new connection
        httpx.post(
            url,
            json={"order_id": f"floor-{chain}", "amount": 1},
            headers={"Idempotency-Key": f"floor-{chain}-{step}"},
            timeout=10,
        ).raise_for_status()
    now = clock.now()
    stream = f"floor:{chain}"
    payload = {"step": step}
    body = json.dumps(
        {"actor": "bench", "at": now.isoformat(), "payload": payload, "prev": prev,
         "seq": step, "stream": stream, "type": "floor.step"},
        sort_keys=True, separators=(",", ":"),
    )  # fmt: skip
    digest = hashlib.sha256(body.encode()).hexdigest()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_floor_event (stream, seq, type, payload, actor, occurred_at,"
                " prev_hash, hash, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [stream, step, "floor.step", json.dumps(payload), "bench", now, prev, digest, body],
            )
            if step == total:
                cursor.execute(
                    "INSERT INTO bench_floor_done (chain, started_at, finished_at)"
                    " VALUES (%s, %s, %s)",
                    [chain, started_at, now],
                )
    if step < total:
        floor_step.delay(chain, step + 1, total, started_at, digest, url)


def start_chain(chain: int, total: int, url: str = "") -> None:
    floor_step.delay(chain, 1, total, clock.now().isoformat(), "0" * 64, url)


def finished(chains: list[int]) -> dict[int, float]:
    """Latency in ms of the chains among ``chains`` that are done."""
    if not chains:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT chain, EXTRACT(EPOCH FROM finished_at - started_at) * 1000"
            " FROM bench_floor_done WHERE chain = ANY(%s)",
            [chains],
        )
        return {chain: float(ms) for chain, ms in cursor.fetchall()}
