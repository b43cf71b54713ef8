"""Celery entry point of the triggers: beat ticks the sweep, nothing more."""

import logging

from celery import shared_task

from connectors.triggers import intake, schedules
from runs.ground import clock

log = logging.getLogger(__name__)


@shared_task
def sweep() -> None:
    now = clock.now()
    fired = schedules.sweep(now)
    purged = intake.purge(now)
    if any(fired.values()) or any(purged.values()):
        log.info("trigger sweep: fires %s, purged %s", fired, purged)
