"""Live inboxes: with Redis, a change to any task is announced over the
channel layer and open pages refresh their list and badge; on the embedded
default (no Redis, so no layer shared between processes) pages poll."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

log = logging.getLogger(__name__)

GROUP = "approvals"


def mode() -> str:
    """ "channels" or "polling": what the inbox and badge templates use."""
    return settings.LEDGERFLOW_LIVE_UPDATES


def announce() -> None:
    """Tell every open inbox that tasks changed. Best effort: a page that
    misses it catches up on its next load, and the log is the truth."""
    if mode() != "channels":
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(GROUP, {"type": "tasks.changed"})
    except Exception as exc:  # the layer is down; nothing is lost but a refresh
        log.warning("could not announce an approval change: %s", exc)
