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
- a consumer claims a message by renaming it into ``claimed/``: of several
  consumers exactly one rename succeeds, the others see the file vanish and
  move on to the next one;
- exchange tables are rewritten under a lock file and replaced atomically.

All folders must be on one filesystem; settings put them under
``LEDGERFLOW_DATA_DIR/broker``. Delivery is still at most once per fetch:
a worker killed while holding a message loses it, and the recovery sweep
(runs/sweeper.py) re-dispatches the step from the database.
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


class Channel(filesystem.Channel):
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
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            message = self._claim(name)
            if message is not None:
                return message
        raise Empty()

    def _claim(self, name: str):
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
        os.unlink(claimed)
        return message

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


class Transport(filesystem.Transport):
    Channel = Channel
