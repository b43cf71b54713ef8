"""Burst on the embedded broker: K producer processes send N tasks between
them at once through the filesystem broker (config/broker.py) to two worker
processes; prints how long until all were done, how many were lost, and
whether a worker died.

The task is `record_heartbeat(name)`, which upserts one row per name in
SQLite, so "done" is one row per message.

    python -m bench.broker_burst [--messages 600] [--producers 4]
"""

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT
from tests.processes import embedded_env, manage

SEND = """
import time
from runs.tasks import record_heartbeat
time.sleep(max(0, {start} - time.time()))
for n in range({count}):
    record_heartbeat.delay("burst-{tag}-%d" % n)
"""


def _rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "ledgerflow.sqlite3", timeout=20) as conn:
        sql = "SELECT count(*) FROM runs_heartbeat WHERE process LIKE 'burst-%'"
        return conn.execute(sql).fetchone()[0]


def run(messages: int, producers: int, deadline: float) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="ledgerflow-burst-"))
    env = embedded_env(data_dir, LOG_LEVEL="WARNING")
    manage(env, "migrate", "--noinput")
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--concurrency",
                "2",
                "--loglevel",
                "WARNING",
                "--without-mingle",
                "--without-gossip",
                "-n",
                f"w{n}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=open(data_dir / f"worker-{n}.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        for n in range(2)
    ]
    try:
        time.sleep(3)  # the workers come up
        start = time.time() + 3  # every producer has started Django by then
        each = messages // producers
        senders = [
            subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "shell",
                    "--no-imports",
                    "-c",
                    SEND.format(start=start, count=each, tag=n),
                ],
                cwd=ROOT,
                env=env,
            )  # fmt: skip
            for n in range(producers)
        ]
        codes = [s.wait(timeout=300) for s in senders]
        sent_s = time.time() - start
        total = each * producers
        while _rows(data_dir) < total and time.time() - start < deadline:
            time.sleep(0.1)
        done_s = time.time() - start
        done = _rows(data_dir)
        alive = sum(1 for w in workers if w.poll() is None)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    logs = "".join(p.read_text() for p in data_dir.glob("worker-*.log"))
    return {
        "messages": total,
        "producers": producers,
        "send_failures": sum(1 for c in codes if c != 0),
        "done": done,
        "lost": total - done,
        "sent_s": round(sent_s, 2),
        "drained_s": round(done_s, 2),
        "per_s": round(done / done_s, 1),
        "workers_alive": alive,
        "unrecoverable": logs.count("Unrecoverable error"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--deadline", type=float, default=180)
    args = parser.parse_args()
    figures = run(args.messages, args.producers, args.deadline)
    print("broker_burst: " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


if __name__ == "__main__":
    main()
