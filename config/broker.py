"""The embedded default's broker: kombu's filesystem transport, made safe for
several processes writing and reading one folder at once.

Stock kombu creates a message file under its final name and then writes it,
so a consumer polling the folder can take the file while it is still empty
and die on ``JSONDecodeError`` (kombu issue 1551); the worker then stops with
"Unrecoverable error". It also moves a taken file to the system's temporary
folder, which may be another filesystem (a copy, not an atomic move), and
rewrites exchange tables in place where a reader can see them half-written.

Here every file appears whole or not at all:

- a producer writes the message into ``staging/`` and renames it into the
  queue folder (a rename within one filesystem is atomic);
- a consumer claims a message by renaming it into ``claimed/`` under a name
  that starts with its pid: of several consumers exactly one rename
  succeeds, the others see the file vanish and move on to the next one;
- the claimed file is deleted when the message is acknowledged (or put back
  when it is rejected or the channel closes with it unacknowledged); one
  whose process has died (a worker SIGKILLed mid-task) is moved back into
  the queue by any consumer, so it is delivered again (at least once);
- exchange tables are rewritten under a lock file and replaced atomically.

All folders must be on one filesystem; settings put them under
``LEDGERFLOW_DATA_DIR/broker``. Redelivery is safe for the platform's tasks:
claims on steps are compare-and-set on the attempt.
"""

import fcntl
import logging
import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from queue import Empty

from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

logger = logging.getLogger(__name__)


# How often a consumer looks for messages claimed by processes that died.
ORPHAN_SCAN_SECONDS = 2.0


class Channel(filesystem.Channel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._claims: dict[str, str] = {}  # delivery tag -> claimed file
        self._no_ack_queues: set[str] = set()
        self._scanned_at = 0.0

    @cached_property
    def staging_folder(self) -> str:
        return self._sibling_folder("staging_folder", "staging")

    @cached_property
    def claimed_folder(self) -> str:
        return self._sibling_folder("claimed_folder", "claimed")

    @cached_property
    def corrupt_folder(self) -> str:
        return self._sibling_folder("corrupt_folder", "corrupt")

    def _sibling_folder(self, option: str, name: str) -> str:
        default = Path(self.data_folder_out).parent / name
        folder = Path(self.transport_options.get(option) or default)
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    def _put(self, queue, payload, **kwargs):
        # Nanoseconds first, so that sorting the names keeps the send order.
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        staged = os.path.join(self.staging_folder, name)
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(str_to_bytes(dumps(payload)))
        os.rename(staged, os.path.join(self.data_folder_out, name))

    def _get(self, queue):
        self._requeue_orphans()
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            message = self._claim(name, queue)
            if message is not None:
                return message
        raise Empty()

    def _claim(self, name: str, queue: str):
        claimed = os.path.join(self.claimed_folder, f"{os.getpid()}-{name}")
        try:
            os.rename(os.path.join(self.data_folder_in, name), claimed)
        except FileNotFoundError:
            return None  # another consumer took it first
        with open(claimed, "rb") as handle:
            payload = handle.read()
        try:
            message = loads(bytes_to_str(payload))
        except ValueError:
            # Not written by this transport (a stock kombu producer, a disk
            # fault): keep it for inspection and go on serving the rest.
            kept = os.path.join(self.corrupt_folder, name)
            os.rename(claimed, kept)
            logger.error("broker: message %s is not JSON; kept in %s", name, kept)
            return None
        tag = message.get("properties", {}).get("delivery_tag")
        if tag is None or queue in self._no_ack_queues:
            os.unlink(claimed)  # nobody will acknowledge it
        else:
            self._claims[tag] = claimed
        return message

    def _settle(self, tag) -> None:
        path = self._claims.pop(tag, None)
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def basic_consume(self, queue, no_ack, *args, **kwargs):
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue, no_ack=False, **kwargs):
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._settle(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag, multiple=False):
        super().basic_ack(delivery_tag, multiple)
        self._settle(delivery_tag)

    def basic_reject(self, delivery_tag, requeue=False):
        super().basic_reject(delivery_tag, requeue=requeue)
        self._settle(delivery_tag)

    def _restore(self, message):
        # Rejected with requeue, or unacknowledged when the channel closes:
        # a copy goes back to the queue, so the claim is done with.
        super()._restore(message)
        self._settle(message.delivery_tag)

    def _requeue_orphans(self) -> None:
        """Put back messages claimed by processes that no longer exist."""
        if time.monotonic() - self._scanned_at < ORPHAN_SCAN_SECONDS:
            return
        self._scanned_at = time.monotonic()
        for name in os.listdir(self.claimed_folder):
            pid, _, original = name.partition("-")
            if not pid.isdigit() or _alive(int(pid)):
                continue
            try:
                os.rename(
                    os.path.join(self.claimed_folder, name),
                    os.path.join(self.data_folder_in, original),
                )
            except FileNotFoundError:
                continue  # another consumer put it back first
            logger.warning("broker: requeued %s, claimed by process %s which died", original, pid)

    @contextmanager
    def _table_lock(self, exchange):
        path = self._exchange_file(exchange).with_suffix(".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _write_table(self, exchange, table) -> None:
        file = self._exchange_file(exchange)
        staged = os.path.join(self.staging_folder, f"{uuid.uuid4().hex}.exchange")
        with open(staged, "wb") as handle:
            handle.write(str_to_bytes(dumps(table)))
        os.replace(staged, file)

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        self.control_folder.mkdir(exist_ok=True)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._table_lock(exchange):
            table = self.get_table(exchange)
            if entry not in table:
                self._write_table(exchange, [entry, *table])

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        virtual.Channel._delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._table_lock(exchange):
            table = self.get_table(exchange)
            if entry in table:
                self._write_table(exchange, [row for row in table if row != entry])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process
    return True


class Transport(filesystem.Transport):
    Channel = Channel
