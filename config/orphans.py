"""No platform process outlives the process that started it.

A Celery worker left running after `make run` stopped keeps consuming and
holding database connections. supervisord stops its programs' process
groups, but if supervisord itself is killed (SIGKILL cannot be caught),
nothing would. So:

- every program supervisord starts goes through this module as an exec
  wrapper, which asks Linux to SIGKILL it when its parent (supervisord)
  dies (``prctl(PR_SET_PDEATHSIG)``, kept across ``exec``), then becomes
  the program:

      python -P config/orphans.py celery -A config worker ...

- a Celery pool child watches its parent (the worker's main process) from a
  thread and kills itself once the parent is gone (config/celery.py).
  PDEATHSIG would not do there: it fires when the *thread* that forked
  exits, and billiard forks replacement children from a helper thread.

Stdlib only: it runs as a script before anything else is imported.
"""

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to this process when its parent dies (Linux; elsewhere a
    no-op)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig)) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent or parent == 1:
        os._exit(1)  # the parent died before the request took effect


def watch_parent(interval: float = 0.5) -> None:
    """Kill this process, from a daemon thread, once its parent has gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -P config/orphans.py PROGRAM [ARGS...]")
    die_with_parent()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
