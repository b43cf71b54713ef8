"""The Celery app. Tasks are thin entry points that call services."""

import inspect
import logging.config
import os
from contextvars import Token

from celery import Celery
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from config.orphans import watch_parent
from runs.ground import logcontext

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("ledgerflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _die_with_the_worker(**_) -> None:
    # A pool child whose worker was killed must not go on executing tasks.
    watch_parent()


@worker_process_shutdown.connect
def _pool_child_exits(pid=None, **_) -> None:
    # Sent in the pool child as it exits (a warm shutdown, a recycled
    # child): its live gauges stop being summed by /metrics.
    from runs import stepmetrics

    stepmetrics.mark_dead(pid)


@worker_shutdown.connect
def _worker_exits(**_) -> None:
    # The worker's main process (it runs tasks itself with the solo or
    # threads pool).
    from runs import stepmetrics

    stepmetrics.mark_dead()


# Task arguments that name the run a task works on, and the flow.
RUN_ARGUMENTS = ("run_id", "child_run_id", "parent_run_id")
_log_tokens: dict[str, Token] = {}


def task_log_context(task, args, kwargs) -> dict:
    """The run, step and flow a task is about, read from its arguments."""
    try:
        arguments = inspect.signature(task.run).bind_partial(*args, **kwargs).arguments
    except TypeError:  # a message that does not fit the task: Celery reports it
        return {}
    run_id = next((arguments[name] for name in RUN_ARGUMENTS if name in arguments), None)
    fields = {"run_id": run_id, "step": arguments.get("node")}
    from django.conf import settings

    # Only JSON lines carry the flow: the plain format pays no query per task.
    if settings.LOG_FORMAT == "json":
        fields["flow"] = _flow_slug(run_id, arguments.get("flow_id"))
    return fields


def _flow_slug(run_id, flow_id) -> str | None:
    from flows.models import Flow
    from runs.models import Run

    if isinstance(run_id, int):
        return Run.objects.filter(pk=run_id).values_list("flow__slug", flat=True).first()
    if isinstance(flow_id, int):
        return Flow.objects.filter(pk=flow_id).values_list("slug", flat=True).first()
    return None


@task_prerun.connect
def _bind_log_context(task_id=None, task=None, args=(), kwargs=None, **_) -> None:
    _log_tokens[task_id] = logcontext.bind(**task_log_context(task, args, kwargs or {}))


@task_postrun.connect
def _unbind_log_context(task_id=None, **_) -> None:
    token = _log_tokens.pop(task_id, None)
    if token is not None:
        logcontext.unbind(token)


def _logging_from_settings(**_) -> None:
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


# Celery replaces the root logger's handlers with its own plain format unless
# someone configures logging; for JSON lines, Django's LOGGING does.
if os.environ.get("LOG_FORMAT") == "json":
    setup_logging.connect(_logging_from_settings, weak=False)
