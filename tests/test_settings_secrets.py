"""Secrets generated for a new data directory: processes that start at once
(web, worker, beat) agree on them and none fails."""

import subprocess
import sys

from tests.processes import ROOT, embedded_env, wait_until

# Each process waits for the go file, then loads the settings: they reach the
# secret's creation together, as web, worker and beat do under `make run`.
LOAD_AT_GO = """
import os, sys, time
go = sys.argv[1]
open(f"{go}.ready.{os.getpid()}", "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
import config.settings as s
print(s.LEDGERFLOW_SECRET_KEYS[0])
"""


def test_processes_starting_at_once_on_a_new_data_directory_share_one_secret(tmp_path):
    data = tmp_path / "data"
    env = embedded_env(data)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD_AT_GO, str(go)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(12)
    ]
    # Every interpreter up and waiting.
    wait_until(lambda: len(list(tmp_path.glob("go.ready.*"))) == 12, timeout=60, interval=0.05,
               what="12 processes waiting for the go file")  # fmt: skip
    go.touch()
    results = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err[-500:] for _, err in results]
    keys = {out.strip() for out, _ in results}
    assert len(keys) == 1 and keys.pop() == (data / "secret_keys").read_text().strip()
    assert not list(data.glob(".secret_keys.*"))  # no candidate left behind
