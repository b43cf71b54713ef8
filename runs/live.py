"""Live run pages. With Redis, every commit on a run is announced over the
channel layer to the group of that run's open pages (``RunConsumer``), which
then fetch their live fragment over HTTP, through the run page's own view
and permission check: the socket carries no run data. On the embedded
default (no Redis, so no layer shared between processes) pages poll.

Announcing is best effort and never slows or fails the run: the commit hands
the run's id to a sender thread of this process (one event loop, so one pool
of Redis connections), which sends at most one pending announcement per run
at a time. A page that misses one catches up on the next, or on reconnect;
the event log stays the truth.
"""

import asyncio
import logging
import os
import threading

from channels.layers import get_channel_layer  # type: ignore[import-untyped]
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

# What the consumer's handler is called by: "run.changed" -> run_changed.
MESSAGE = {"type": "run.changed"}
SEND_TIMEOUT = 2.0


def mode() -> str:
    """ "channels" or "polling": what the run page's template uses."""
    return settings.LEDGERFLOW_LIVE_UPDATES


def group(run_id: int) -> str:
    return f"run-{run_id}"


def announce_on_commit(run_id: int) -> None:
    """Once the open transaction commits, tell the run's open pages."""
    if mode() == "channels":
        transaction.on_commit(lambda: _sender().announce(run_id))


class _Sender:
    """A daemon thread running an event loop that sends announcements."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pending: set[int] = set()
        self.lock = threading.Lock()
        thread = threading.Thread(target=self.loop.run_forever, name="run-live", daemon=True)
        thread.start()

    def announce(self, run_id: int) -> None:
        with self.lock:
            if run_id in self.pending:
                return  # an announcement not yet sent covers this commit too
            self.pending.add(run_id)
        try:
            asyncio.run_coroutine_threadsafe(self._send(run_id), self.loop)
        except RuntimeError as exc:  # the loop is gone (interpreter exit)
            with self.lock:
                self.pending.discard(run_id)
            log.warning("could not announce a change of run %s: %s", run_id, exc)

    async def _send(self, run_id: int) -> None:
        # Taken off before sending: a commit from now on gets its own send.
        with self.lock:
            self.pending.discard(run_id)
        try:
            layer = get_channel_layer()
            if layer is not None:
                await asyncio.wait_for(layer.group_send(group(run_id), MESSAGE), SEND_TIMEOUT)
        except Exception as exc:  # the layer is down; nothing is lost but a refresh
            log.warning("could not announce a change of run %s: %s", run_id, exc)


_senders: dict[int, _Sender] = {}
_senders_lock = threading.Lock()


def _sender() -> _Sender:
    """This process's sender (a forked worker starts its own)."""
    pid = os.getpid()
    sender = _senders.get(pid)
    if sender is None:
        with _senders_lock:
            sender = _senders.get(pid)
            if sender is None:
                _senders.clear()
                sender = _senders[pid] = _Sender()
    return sender
