"""A small process supervisor for drills: restarts what dies, kills whole
process groups, and finds a worker's pool children and their sockets."""

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import ROOT


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    history: list[int] = field(default_factory=list)

    def start(self) -> None:
        handle = open(self.log, "a")
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.started_at = time.monotonic()
        self.history.append(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_group(self, sig=signal.SIGKILL) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class Supervisor:
    def __init__(self, services: list[Service], *, stalled: Callable[[], bool] | None = None):
        self.services = {s.name: s for s in services}
        self.stalled = stalled
        self.watchdog_restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "Supervisor":
        for service in self.services.values():
            service.start()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for service in self.services.values():
            service.kill_group(signal.SIGTERM)

    def restart(self, name: str) -> None:
        service = self.services[name]
        service.kill_group()
        service.restarts += 1
        service.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            for service in self.services.values():
                if not service.alive():
                    # The main process died: take its orphans with it, start anew.
                    service.kill_group()
                    service.restarts += 1
                    service.start()
            if self.stalled is not None and self.stalled():
                self.watchdog_restarts += 1
                for name in self.services:
                    if name.startswith("worker"):
                        self.restart(name)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _socket_inodes_to(port: int) -> set[str]:
    """Inodes of established TCP connections to 127.0.0.1:port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            remote, state, inode = parts[2], parts[3], parts[9]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def pids_talking_to(port: int, pids: list[int]) -> list[int]:
    """Which of ``pids`` hold an open connection to ``port`` right now."""
    inodes = _socket_inodes_to(port)
    talking = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                talking.append(pid)
                break
    return talking
