"""Celery entry points of approvals: thin, they call the sweep."""

import datetime as dt

from celery import shared_task

from approvals import sweep
from runs.ground import clock


@shared_task
def sweep_slas(now: str | None = None) -> dict:
    """Beat ticks this with no argument (the clock's now); a caller that
    moves time passes ``now`` as ISO 8601."""
    moment = dt.datetime.fromisoformat(now) if now else clock.now()
    return sweep.sweep(moment)
