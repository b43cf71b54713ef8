"""What processes did with steps, for /metrics: how long each step attempt
took, how the attempts ended, and how many run right now; by connector (the
node type, as ``Step.connector`` stores it).

An attempt is what ``step.started`` records, and each is observed once,
when its outcome is known, in the process that ran it: a worker for a
side-effecting step, a web process or a worker for a pure step run inline.
Its duration is its time in that process: rendering its config and calling
its connector (a config that does not render: the rendering; a disabled
node, which calls nothing: 0). A worker observes at once, its
``step.started`` being committed before the call; an inline step is
observed after its session commits, since a rolled-back session ran it
but recorded no attempt (the step runs again). So the counts follow the
attempts the database holds, except those of a process that died mid-call
(``ledgerflow_sweep_expired_leases``).

The figures live in ``prometheus_client``'s multiprocess files under
``PROMETHEUS_MULTIPROC_DIR`` (config/settings.py sets it before anything
imports the library), which config/metrics.py sums at scrape time. A
metrics failure is logged, never raised: no run fails for its figures.
"""

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

# 1 ms (an inline transform) to 60 s (a slow remote at its time-out).
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

# How an attempt ended, from the connector's answer.
SUCCEEDED, WAITING, FAILED = "succeeded", "waiting", "failed"

_metrics: dict[str, Any] = {}
_making = threading.Lock()


def _made() -> dict[str, Any]:
    """The metric objects, made on first use: by then the settings, which
    choose the multiprocess folder, are loaded (a step runs on the database)."""
    if _metrics:
        return _metrics
    with _making:
        if _metrics:
            return _metrics
        from django.conf import settings

        settings.DATA_DIR  # noqa: B018 -- loads the settings, which set the folder
        from prometheus_client import Counter, Gauge, Histogram

        made = {
            "duration": Histogram(
                "ledgerflow_step_duration_seconds",
                "Time a step attempt took: rendering its config and calling its connector.",
                ["connector"],
                buckets=DURATION_BUCKETS,
            ),
            "attempts": Counter(
                "ledgerflow_step_attempts",
                "Step attempts by connector and outcome (succeeded, waiting, failed).",
                ["connector", "outcome"],
            ),
            # livesum: the sum over the processes alive; a process's file
            # goes when it exits (mark_dead), so a killed worker's steps
            # stop counting as running.
            "running": Gauge(
                "ledgerflow_steps_running",
                "Step attempts whose connector is running now, by connector.",
                ["connector"],
                multiprocess_mode="livesum",
            ),
        }
        _metrics.update(made)
    return _metrics


def outcome_of(outcome: Any) -> str:
    """``runs.perform.Outcome`` as a label."""
    result = getattr(outcome, "result", None)
    if result is None:
        return FAILED
    if result.wait_until is not None or result.wait_for:
        return WAITING
    return SUCCEEDED


def observe(connector: str, seconds: float, outcome: str) -> None:
    """Count one finished attempt of ``connector``."""
    try:
        made = _made()
        made["duration"].labels(connector=connector).observe(seconds)
        made["attempts"].labels(connector=connector, outcome=outcome).inc()
    except Exception:
        log.exception("could not observe a step of %s for /metrics", connector)


@contextmanager
def running(connector: str) -> Iterator[None]:
    """The gauge of running steps, up for the block; it never raises."""
    gauge = None
    try:
        gauge = _made()["running"].labels(connector=connector)
        gauge.inc()
    except Exception:
        gauge = None
        log.exception("could not count a running step of %s for /metrics", connector)
    try:
        yield
    finally:
        if gauge is not None:
            try:
                gauge.dec()
            except Exception:
                log.exception("could not count a running step of %s for /metrics", connector)


def mark_dead(pid: int | None = None) -> None:
    """A process exits: its live gauges' files go, so its running steps are
    no longer summed. Its counters and histograms stay (totals only grow
    until the platform starts again and the folder is emptied)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), folder)
    except Exception:
        log.exception("could not mark process %s dead in %s", pid or os.getpid(), folder)
