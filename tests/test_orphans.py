"""config/orphans.py: a platform process dies with the process that started
it, so stopping `make run` leaves no worker behind even when supervisord (or
a worker's main process) is killed outright."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.processes import ROOT, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _parent_with_child(child_code: str) -> tuple[subprocess.Popen, int]:
    """A parent process that starts a child running ``child_code`` and waits;
    returns the parent and the child's pid."""
    parent_code = textwrap.dedent(f"""
        import os, sys, time
        pid = os.fork()
        if pid == 0:
            os.write(1, b"ready\\n")
            {child_code}
            time.sleep(60)
            os._exit(0)
        os.write(1, b"%d\\n" % pid)  # one write: lines from both must not mix
        time.sleep(60)
    """)
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    lines = {parent.stdout.readline().strip(), parent.stdout.readline().strip()}
    lines.discard("ready")
    return parent, int(lines.pop())


def _kill_parent_and_watch(parent: subprocess.Popen, child: int) -> bool:
    """SIGKILL the parent; True if the child is gone within 3 s."""
    try:
        assert _alive(child)
        parent.kill()
        parent.wait()
        try:
            wait_until(lambda: not _alive(child), timeout=3, what="the child to die")
            return True
        except AssertionError:
            return False
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_watched_child_dies_with_its_parent_even_mid_task():
    # A Celery pool child busy with a task does not notice its worker's death
    # on its own: it would finish the task for nobody.
    parent, child = _parent_with_child(
        "from config.orphans import watch_parent; watch_parent(interval=0.1); "
        "os.write(1, b'watching\\n')"
    )
    assert parent.stdout.readline().strip() == "watching"
    assert _kill_parent_and_watch(parent, child)


def test_a_program_started_through_the_wrapper_dies_with_its_parent():
    parent, child = _parent_with_child(
        "os.execv(sys.executable, [sys.executable, '-P', 'config/orphans.py', 'sleep', '60'])"
    )
    wait_until(
        lambda: open(f"/proc/{child}/cmdline").read().startswith("sleep"),
        timeout=10, what="the wrapper to exec the program",
    )  # fmt: skip
    assert _kill_parent_and_watch(parent, child)


def test_the_wrapper_refuses_to_run_without_a_program():
    result = subprocess.run(
        [sys.executable, "-P", "config/orphans.py"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode != 0 and "usage" in result.stderr
