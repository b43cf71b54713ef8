"""The Celery app. Tasks are thin entry points that call services."""

import os

from celery import Celery
from celery.signals import worker_process_init

from config.orphans import watch_parent

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("ledgerflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _die_with_the_worker(**_) -> None:
    # A pool child whose worker was killed must not go on executing tasks.
    watch_parent()
