"""The Celery messages the engine sends, by task name.

``runs/tasks.py`` holds the entry points and imports the driver and the
sweep; they in turn wake work up through here, by name, instead of importing
the tasks back (RunsConfig.ready() imports the tasks, so every process has
them registered). The task objects are looked up in the Celery app, so an
eager test configuration runs them in place as before.
"""

import datetime as dt
from typing import Any

from celery import current_app
from celery.app.task import Task

CONTINUE_RUN = "runs.tasks.continue_run"
EXECUTE_STEP = "runs.tasks.execute_step"
FIRE_TIMER = "runs.tasks.fire_timer"
RELEASE_QUEUED = "runs.tasks.release_queued"
SIGNAL_PARENT = "runs.tasks.signal_parent"
CANCEL_ORPHANS = "runs.tasks.cancel_orphans"


def task(name: str) -> Task:
    return current_app.tasks[name]


def send(
    name: str,
    args: tuple[Any, ...],
    *,
    countdown: float | None = None,
    eta: dt.datetime | None = None,
) -> None:
    task(name).apply_async(args, countdown=countdown, eta=eta)
