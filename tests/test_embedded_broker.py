"""The embedded broker (config/broker.py) under several writers and readers
at once: every message is delivered, none twice, and no consumer dies.

Stock kombu's filesystem transport fails this test: a consumer takes a
message file its producer has not finished writing and dies of
``JSONDecodeError`` (kombu issue 1551)."""

import subprocess
import sys

import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.slow

PRODUCERS, CONSUMERS, EACH = 4, 3, 300


def _start(*args: str, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.broker_burst", *args],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_a_burst_from_several_producers_reaches_several_consumers_whole(tmp_path):
    folder = tmp_path / "broker"
    for sub in ("queue", "control"):
        (folder / sub).mkdir(parents=True)
    log = open(tmp_path / "processes.log", "w")
    consumers = [
        _start("consume", str(folder), str(tmp_path / f"got-{n}"), log=log)
        for n in range(CONSUMERS)
    ]
    producers = [
        _start("produce", str(folder), f"p{n}", str(EACH), log=log) for n in range(PRODUCERS)
    ]
    try:
        assert [p.wait(timeout=120) for p in producers] == [0] * PRODUCERS
        (folder / "stop").touch()
        codes = [c.wait(timeout=120) for c in consumers]
    finally:
        for proc in consumers + producers:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "processes.log").read_text()
    assert codes == [0] * CONSUMERS, output[-3000:]
    received = [
        line for n in range(CONSUMERS) for line in (tmp_path / f"got-{n}").read_text().split()
    ]
    sent = {f"p{p}-{n}" for p in range(PRODUCERS) for n in range(EACH)}
    assert set(received) == sent
    assert len(received) == len(sent)  # each message to one consumer only
    # Every consumer took part, and nothing is left half-way.
    assert all((tmp_path / f"got-{n}").read_text() for n in range(CONSUMERS))
    assert list((folder / "queue").iterdir()) == []
    assert list((folder / "claimed").iterdir()) == []
    assert list((folder / "staging").iterdir()) == []


def test_messages_held_by_a_consumer_that_is_killed_are_delivered_again(tmp_path):
    folder = tmp_path / "broker"
    for sub in ("queue", "control"):
        (folder / sub).mkdir(parents=True)
    log = open(tmp_path / "processes.log", "w")
    producer = _start("produce", str(folder), "p", "20", log=log)
    assert producer.wait(timeout=60) == 0
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.broker_burst", "hold", str(folder), "5"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert len(list((folder / "claimed").iterdir())) == 5
        holder.kill()  # a worker SIGKILLed with tasks in hand
        holder.wait()
        (folder / "stop").touch()
        consumer = _start("consume", str(folder), str(tmp_path / "got"), log=log)
        assert consumer.wait(timeout=60) == 0
    finally:
        holder.kill()
        holder.wait()
        log.close()
    received = (tmp_path / "got").read_text().split()
    assert sorted(received) == sorted(f"p-{n}" for n in range(20))
    assert list((folder / "claimed").iterdir()) == []
