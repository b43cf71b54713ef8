"""The drills and the benchmark in small form: the same scripts as `make drill`
and `make bench`, with fewer runs. They start real workers and kill them.

Each drill also runs with its protection switched off (``--unprotected``)
and must then report the failure it guards against: a drill that can no
longer fail turns this file red. The drills use their own redis-server and
databases, so the protected and unprotected forms of a drill run side by
side to keep this file short."""

import os
import re
import subprocess
import sys

import pytest

from tests.processes import ROOT

# Each drill runs two platforms at once; in a parallel run (`make test`) the
# drills take turns on one worker, so no more than two load the machine.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("drills")]


def start(command: list[str]) -> subprocess.Popen:
    # The platforms a drill starts keep their metrics in their own data
    # directories, not in this test process's folder.
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    return subprocess.Popen(
        [sys.executable, "-m", *command], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def figures_of(proc: subprocess.Popen, prefix: str) -> dict[str, float]:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    line = next(text for text in stdout.splitlines() if text.startswith(prefix + ": "))
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+|nan)", line)}


def figures(command: list[str], prefix: str) -> dict[str, float]:
    return figures_of(start(command), prefix)


def both(command: list[str], prefix: str) -> tuple[dict, dict]:
    """The drill with its protection, and without, run at the same time."""
    protected, unprotected = start(command), start([*command, "--unprotected"])
    return figures_of(protected, prefix), figures_of(unprotected, prefix)


def test_kill_drill_loses_nothing_and_charges_nothing_twice():
    f, off = both(["bench.drill_kill", "--runs", "24", "--kills", "2"], "drill_kill")
    assert (f["runs"], f["accepted"], f["finished"], f["lost"], f["stuck"]) == (24, 24, 24, 0, 0)
    assert f["duplicate_effects"] == 0 and f["kills"] == 2 and f["kills_in_effect"] >= 1
    # A remote that ignores the keys the charge claims it honours: the
    # retries after kills and late answers charge again, and the drill sees it.
    assert off["duplicate_effects"] > 0


def test_kill_drill_with_an_unsafe_charge_leaves_outcome_unknown_dead_letters():
    f, off = both(
        ["bench.drill_kill", "--runs", "24", "--kills", "2", "--unsafe"], "drill_kill_unsafe"
    )
    assert f["finished"] + f["outcome_unknown"] == f["runs"] == f["accepted"] == 24
    assert f["other"] == f["lost"] == f["stuck"] == f["duplicate_effects"] == 0
    # The unsafe charge treated as safe: retried after a kill or a late
    # answer, at a remote that ignores keys, it charges twice.
    assert off["duplicate_effects"] > 0


def test_unsafe_timeout_drill_never_charges_twice_and_retries_what_was_refused():
    f, off = both(["bench.drill_unsafe_timeout", "--runs", "30"], "drill_unsafe_timeout")
    assert f["finished"] + f["outcome_unknown"] == f["runs"] == f["accepted"] == 30
    assert f["other"] == f["lost"] == f["stuck"] == f["duplicate_effects"] == 0
    assert f["retried_safely"] > 0 and f["late_answers"] > 0
    assert off["duplicate_effects"] > 0


def test_broker_drill_recovers_from_a_redis_restart():
    f, off = both(["bench.drill_broker", "--runs", "40", "--stuck-after", "30"], "drill_broker")
    assert (f["runs"], f["accepted"], f["finished"], f["lost"], f["stuck"]) == (40, 40, 40, 0, 0)
    assert f["duplicate_effects"] == 0
    # Without re-dispatch, what Redis lost stays lost: runs stick.
    assert off["stuck"] > 0


def test_engine_benchmark_prints_its_figures(tmp_path):
    out = tmp_path / "engine.json"
    proc = start(
        ["bench.engine", "--seconds", "1", "--max-runs", "20", "--rounds", "1",
         "--repetitions", "1", "--warmup", "0.2", "--out", str(out)],
    )  # fmt: skip
    f = figures_of(proc, "engine")
    assert f["steps_per_s_16"] > 0 and f["floor_steps_per_s_16"] > 0
    assert out.exists()


def test_embedded_drill_under_make_run_loses_nothing_and_leaves_nothing_running():
    # `make run` itself (supervisord, SQLite, the filesystem broker), a burst
    # of webhook deliveries and a worker SIGKILLed half-way.
    f = figures(["bench.drill_embedded", "--bursts", "1", "--deliveries", "40"], "drill_embedded")
    assert f["sent"] == f["accepted"] == f["deliveries"] == 40
    assert f["runs"] == f["finished"] == 40
    assert f["lost"] == f["stuck"] == f["duplicate_effects"] == 0
    assert f["restarts"] >= 1 and f["processes_up"] == 6 and f["left_behind"] == 0
