"""The embedded default's writers queue on a file lock (config/sqlite/base.py)
instead of SQLite's sleep-and-retry: a transaction that finds another in
progress waits for it, however long it takes, without relying on SQLite's
busy timeout. Against a real SQLite file, from two threads, each with its
own connection, as two web requests (or two processes) would be."""

import fcntl
import os
import threading
import time

import pytest
from django.db.utils import ConnectionHandler, OperationalError

# A busy timeout far shorter than the other writer's transaction: a writer
# that relied on it would fail with "database is locked".
BUSY_TIMEOUT = 0.01
HOLD_SECONDS = 0.5


def connections_to(path, engine: str = "config.sqlite") -> ConnectionHandler:
    return ConnectionHandler(
        {
            "default": {
                "ENGINE": engine,
                "NAME": str(path),
                "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": BUSY_TIMEOUT},
            }
        }
    )


def begin(db) -> None:
    # What transaction.atomic does on SQLite when it opens a transaction.
    db.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)


def end(db, *, commit: bool = True) -> None:
    db.commit() if commit else db.rollback()
    db.set_autocommit(True)


def lock_is_free(path) -> bool:
    fd = os.open(f"{path}.writer-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


@pytest.fixture(autouse=True)
def own_databases(django_db_blocker):
    """These tests open SQLite files of their own, not the test database."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "embedded.sqlite3"
    handler = connections_to(path)
    db = handler["default"]
    with db.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("CREATE TABLE ledger (n INTEGER)")
    db.close()
    return path


def run_two_writers(path, engine: str) -> list:
    """The first writer holds its transaction open for HOLD_SECONDS; the
    second begins meanwhile and writes. What each ended with."""
    handler = connections_to(path, engine)
    results: list = []
    first_began = threading.Event()

    def first():
        db = handler["default"]
        begin(db)
        db.cursor().execute("INSERT INTO ledger VALUES (1)")
        first_began.set()
        time.sleep(HOLD_SECONDS)
        # Noted while the lock is still held: the second may commit as soon
        # as this commit releases it, so noting it after would race.
        results.append("first committed")
        end(db)
        db.close()

    def second():
        first_began.wait()
        db = handler["default"]
        try:
            begin(db)
            db.cursor().execute("INSERT INTO ledger VALUES (2)")
            end(db)
            results.append("second committed")
        except OperationalError as exc:
            results.append(f"second failed: {exc}")
        finally:
            db.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_a_writer_waits_its_turn_on_the_lock_not_on_sqlites_busy_timeout(database):
    results = run_two_writers(database, "config.sqlite")
    assert results == ["first committed", "second committed"]
    db = connections_to(database)["default"]
    with db.cursor() as cursor:
        cursor.execute("SELECT n FROM ledger ORDER BY n")
        assert cursor.fetchall() == [(1,), (2,)]
    db.close()


def test_without_the_lock_the_same_writer_fails_on_the_busy_timeout(database):
    """The control: Django's own backend, same timeout, same race."""
    results = run_two_writers(database, "django.db.backends.sqlite3")
    assert results[0].startswith("second failed") and "locked" in results[0]


def test_the_lock_is_held_for_a_transaction_and_freed_by_its_end(database):
    db = connections_to(database)["default"]
    for commit in (True, False):
        begin(db)
        assert not lock_is_free(database)
        end(db, commit=commit)
        assert lock_is_free(database)
    begin(db)
    db.close()  # a connection closed mid-transaction frees it too
    assert lock_is_free(database)
