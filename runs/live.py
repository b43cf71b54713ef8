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
    """A daemon thread running an event loop that sends announcements, one
    at a time from a queue (a burst of commits on many runs does not open a
    connection per announcement), each run at most once in the queue."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.pending: set[int] = set()
        self.lock = threading.Lock()
        self.failing = False
        self.handled = 0  # announcements sent or given up, for tests and benches
        thread = threading.Thread(target=self.loop.run_forever, name="run-live", daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(self._drain(), self.loop)

    def announce(self, run_id: int) -> None:
        with self.lock:
            if run_id in self.pending:
                return  # an announcement not yet sent covers this commit too
            self.pending.add(run_id)
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, run_id)
        except RuntimeError as exc:  # the loop is gone (interpreter exit)
            log.warning("could not announce a change of run %s: %s", run_id, exc)

    async def _drain(self) -> None:
        while True:
            run_id = await self.queue.get()
            # Taken off before sending: a commit from now on gets its own send.
            with self.lock:
                self.pending.discard(run_id)
            await self._send(run_id)
            self.handled += 1

    async def _send(self, run_id: int) -> None:
        try:
            layer = get_channel_layer()
            if layer is not None:
                await asyncio.wait_for(layer.group_send(group(run_id), MESSAGE), SEND_TIMEOUT)
        except Exception as exc:  # the layer is down; nothing is lost but a refresh
            if not self.failing:
                log.warning(
                    "could not announce a change of run %s: %s (silent until it works again)",
                    run_id, exc,
                )  # fmt: skip
            self.failing = True
        else:
            if self.failing:
                log.info("announcing run changes works again")
            self.failing = False


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
