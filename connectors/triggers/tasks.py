"""Celery entry points of the triggers: beat ticks the sweep (schedule
fires, backfill top-ups, the purge); a backfill sends its own top-up while
its runs finish as fast as they start."""

import logging

from celery import shared_task

from connectors.triggers import backfills, intake, schedules
from runs.ground import clock

log = logging.getLogger(__name__)


@shared_task
def sweep() -> None:
    now = clock.now()
    fired = schedules.sweep(now)
    backfilled = backfills.sweep()
    purged = intake.purge(now)
    if any(fired.values()) or any(backfilled.values()) or any(purged.values()):
        log.info("trigger sweep: fires %s, %s, purged %s", fired, backfilled, purged)


@shared_task
def top_up_backfill(backfill_id: int) -> None:
    backfills.top_up(backfill_id)
