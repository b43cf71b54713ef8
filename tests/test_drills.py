"""The drills and the benchmark in small form: the same scripts as `make drill`
and `make bench`, with fewer runs. They start real workers and kill them."""

import re
import subprocess
import sys

import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.slow


def figures(command: list[str], prefix: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    line = next(text for text in lines if text.startswith(prefix + ": "))
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+|nan)", line)}


def test_kill_drill_loses_nothing_and_charges_nothing_twice():
    f = figures(["bench.drill_kill", "--runs", "40", "--kills", "4"], "drill_kill")
    assert (f["runs"], f["finished"], f["lost"], f["stuck"]) == (40, 40, 0, 0)
    assert f["duplicate_effects"] == 0 and f["kills"] == 4 and f["kills_in_effect"] >= 1


def test_kill_drill_with_an_unsafe_charge_leaves_outcome_unknown_dead_letters():
    f = figures(
        ["bench.drill_kill", "--runs", "40", "--kills", "4", "--unsafe"], "drill_kill_unsafe"
    )
    assert f["finished"] + f["outcome_unknown"] == f["runs"] == 40
    assert f["lost"] == f["stuck"] == f["duplicate_effects"] == 0


def test_broker_drill_recovers_from_a_redis_restart():
    f = figures(["bench.drill_broker", "--runs", "60"], "drill_broker")
    assert (f["runs"], f["finished"], f["lost"], f["stuck"], f["duplicate_effects"]) == (
        60, 60, 0, 0, 0,
    )  # fmt: skip


def test_engine_benchmark_prints_its_figures(tmp_path):
    out = tmp_path / "engine.json"
    f = figures(
        ["bench.engine", "--seconds", "1", "--max-runs", "20", "--rounds", "1",
         "--repetitions", "1", "--warmup", "0.2", "--out", str(out)],
        "engine",
    )  # fmt: skip
    assert f["steps_per_s_16"] > 0 and f["floor_steps_per_s_16"] > 0
    assert out.exists()


def test_embedded_drill_under_make_run_loses_nothing_and_leaves_nothing_running():
    # `make run` itself (supervisord, SQLite, the filesystem broker), a burst
    # of webhook deliveries and a worker SIGKILLed half-way.
    f = figures(["bench.drill_embedded", "--bursts", "1", "--deliveries", "40"], "drill_embedded")
    assert f["sent"] == f["accepted"] == f["deliveries"] == 40
    assert f["runs"] == f["finished"] == 40
    assert f["lost"] == f["stuck"] == f["duplicate_effects"] == 0
    assert f["restarts"] >= 1 and f["processes_up"] == 5 and f["left_behind"] == 0
