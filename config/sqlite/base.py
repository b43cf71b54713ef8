"""Django's SQLite backend, with writers queued on a file lock.

Every transaction on the embedded default begins IMMEDIATE (settings.py),
so it holds SQLite's one writer lock from BEGIN to COMMIT. When that lock is
taken, SQLite's busy handler makes the newcomer sleep and retry, its sleeps
growing to 100 ms each; a writer that arrives in a free moment wins over
one that has been sleeping, so under load some writers wait for seconds
while others pass (the webhook benchmark saw a p95 of 4 s and a maximum of
8 s at 32 deliveries in flight).

Here a transaction first takes an exclusive ``flock`` on a file beside the
database, on a descriptor of its own connection, so threads and processes
alike queue in the kernel and the next one is woken the moment the lock is
released: each waits about as long as the transactions ahead of it take.
The lock is released when the transaction ends (commit, rollback or the
connection closing), and by the kernel if the process dies. Writes outside
a transaction (autocommit) still rely on SQLite's busy timeout.
"""

import fcntl
import os

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    _writer_lock_fd: int | None = None
    _writer_lock_held = False

    def _lock_path(self) -> str | None:
        if self.is_in_memory_db():
            return None
        return f"{self.settings_dict['NAME']}.writer-lock"

    def _take_writer_lock(self) -> None:
        path = self._lock_path()
        if path is None or self._writer_lock_held:
            return
        if self._writer_lock_fd is None:
            self._writer_lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._writer_lock_fd, fcntl.LOCK_EX)  # blocks outside the GIL
        self._writer_lock_held = True

    def _release_writer_lock(self) -> None:
        if self._writer_lock_held and self._writer_lock_fd is not None:
            fcntl.flock(self._writer_lock_fd, fcntl.LOCK_UN)
        self._writer_lock_held = False

    def _start_transaction_under_autocommit(self):
        self._take_writer_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_writer_lock()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_writer_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_writer_lock()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._release_writer_lock()
            if self._writer_lock_fd is not None:
                os.close(self._writer_lock_fd)
                self._writer_lock_fd = None
