"""`make run`'s last step: start the platform under supervisord and show
what its processes say.

    python -m config.launcher [--port 8000]

It settles the environment the processes share (the web port, the demo
payments API's and fake CRM's ports kept in the data directory, the outbound allowlist and
the base URL of links in e-mails), starts supervisord with
platform/supervisord.conf, and prints new lines of LEDGERFLOW_DATA_DIR/log/
*.log prefixed with the process name, as the terminal is where the demo's
mails are read. SIGINT or SIGTERM stops supervisord, which stops everything;
if this process is killed, supervisord is told to stop (PDEATHSIG).
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from config import demo
from config.env import env_int, env_str
from config.orphans import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "platform" / "supervisord.conf"
PROGRAMS = ("web", "worker", "beat", "queues", "payments", "crm")


def data_dir() -> Path:
    return Path(env_str("LEDGERFLOW_DATA_DIR") or ROOT / "var").resolve()


def platform_env(port: int) -> dict[str, str]:
    """The environment every process of the platform starts with."""
    data = data_dir()
    payments = demo.payments_port(data)
    crm = demo.crm_port(data)
    env = dict(os.environ)
    env.update(
        LEDGERFLOW_DATA_DIR=str(data),
        # Named for every process, so the folder emptied at start is the
        # one they all write (config/settings.py's default otherwise).
        PROMETHEUS_MULTIPROC_DIR=str(metrics_folder(data)),
        LEDGERFLOW_LOG_DIR=str(data / "log"),
        LEDGERFLOW_PORT=str(port),
        LEDGERFLOW_HOST=env_str("LEDGERFLOW_HOST") or "127.0.0.1",
        LEDGERFLOW_WORKER_CONCURRENCY=str(env_int("LEDGERFLOW_WORKER_CONCURRENCY", 2)),
        # Web processes: one per core unless told (uvicorn --workers).
        WEB_CONCURRENCY=str(env_int("WEB_CONCURRENCY", len(os.sched_getaffinity(0)))),
        LEDGERFLOW_DEMO_PAYMENTS_PORT=str(payments),
        LEDGERFLOW_DEMO_CRM_PORT=str(crm),
        LEDGERFLOW_PYTHON=sys.executable,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    # The demo's worker may call the demo payments API and the fake CRM, and
    # nothing else local; links in e-mails point at the port web serves on.
    # The launcher runs the demo (its fake APIs too), so its connectors are
    # registered.
    defaults = {
        "LEDGERFLOW_DEMO": "1",
        "LEDGERFLOW_OUTBOUND_ALLOWLIST": f"127.0.0.1:{payments},127.0.0.1:{crm}",
        "LEDGERFLOW_BASE_URL": f"http://127.0.0.1:{port}",
    }
    for name, value in defaults.items():
        env[name] = env.get(name) or value
    return env


def _stop_with_me() -> None:
    # Not SIGKILL: supervisord, told with SIGTERM, stops its programs first.
    die_with_parent(signal.SIGTERM)


class Tail:
    """Prints lines appended to the programs' log files, like honcho did."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.offsets = {}
        for name in PROGRAMS:
            path = log_dir / f"{name}.log"
            self.offsets[name] = path.stat().st_size if path.exists() else 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            self.flush()
        self.flush()

    def flush(self) -> None:
        for name in PROGRAMS:
            path = self.log_dir / f"{name}.log"
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < self.offsets[name]:
                self.offsets[name] = 0  # rotated
            if size == self.offsets[name]:
                continue
            with open(path, "rb") as handle:
                handle.seek(self.offsets[name])
                chunk = handle.read(size - self.offsets[name])
            complete = chunk.rfind(b"\n") + 1
            self.offsets[name] += complete
            for line in chunk[:complete].decode(errors="replace").splitlines():
                sys.stdout.write(f"{name:<8} | {line}\n")
            sys.stdout.flush()


def metrics_folder(data: Path) -> Path:
    """Where the processes keep prometheus_client's multiprocess files."""
    return Path(env_str("PROMETHEUS_MULTIPROC_DIR") or data / "metrics").resolve()


def fresh_metrics_folder(folder: Path) -> None:
    """prometheus_client's multiprocess files belong to the processes that
    wrote them: files of an earlier start would be summed with the new
    processes' figures, so the folder starts empty (its documented rule)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=env_int("LEDGERFLOW_PORT", 8000))
    args = parser.parse_args()
    env = platform_env(args.port)
    log_dir = Path(env["LEDGERFLOW_LOG_DIR"])
    log_dir.mkdir(parents=True, exist_ok=True)
    fresh_metrics_folder(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    tail = Tail(log_dir)
    supervisord = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "--nodaemon", "-c", str(CONF)],
        cwd=ROOT, env=env, preexec_fn=_stop_with_me,
    )  # fmt: skip

    def stop(signum, frame):
        if supervisord.poll() is None:
            supervisord.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    thread = threading.Thread(target=tail.run, daemon=True)
    thread.start()
    print(f"Logs of web, worker, beat, queues, payments and crm: {log_dir}/", flush=True)
    code = supervisord.wait()
    tail.stopped.set()
    thread.join(timeout=2)
    sys.exit(code)


if __name__ == "__main__":
    main()
