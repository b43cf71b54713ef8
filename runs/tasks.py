"""Celery entry points of the runs app: thin, they call services."""

from celery import shared_task

from runs import clock
from runs.models import Heartbeat


@shared_task
def record_heartbeat(process: str) -> None:
    """Ticked by beat and executed by a worker: proves both are alive."""
    moment = clock.now()
    Heartbeat.objects.update_or_create(process=process, defaults={"seen_at": moment})
    Heartbeat.objects.update_or_create(process="worker", defaults={"seen_at": moment})
