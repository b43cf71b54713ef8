"""The Celery app. Tasks are thin entry points that call services."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("ledgerflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
