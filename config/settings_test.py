"""Settings for the test suite: the real PostgreSQL and Redis on 127.0.0.1.

`make test` starts them if they are installed but down. Each variable can be
overridden from the environment.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledgerflow")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# The suite exercises the demo connectors (payments, inventory, CPU work).
os.environ.setdefault("LEDGERFLOW_DEMO", "1")
os.environ.setdefault("LEDGERFLOW_DATA_DIR", tempfile.mkdtemp(prefix="ledgerflow-test-"))
# prometheus_client's multiprocess files: a folder of this session's own,
# whatever the environment says, so that test runs side by side (or a
# platform sharing the data directory) never sum each other's figures.
# Set before config/settings.py, which only fills it in when unset.
METRICS_DIR = tempfile.mkdtemp(prefix="ledgerflow-test-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = METRICS_DIR
_OWNER = os.getpid()


@atexit.register
def _remove_metrics_dir() -> None:
    if os.getpid() == _OWNER:  # not a forked child that exits normally
        shutil.rmtree(METRICS_DIR, ignore_errors=True)


# `make test` runs the suite in parallel processes (pytest-xdist workers gw0,
# gw1, ...). pytest-django gives each its own test database
# (test_<name>_gw0, ...); everything else a test touches outside its database
# must be the worker's own too. Workers inherit the environment of the
# process that started them (which ran this file first), so they are moved
# here: each worker gets a data directory of its own (its metrics folder is
# already its own: METRICS_DIR above), and a Redis database of its own,
# since breakers, rate buckets, the channel layer and a Celery broker in one
# database would be shared.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# The first worker keeps the configured database; the others take spare ones
# from the top, never the configured one nor the benchmarks' 11 and 13.
SPARE_REDIS_DBS = (15, 14, 12, 10, 9, 8)


def worker_redis_url(url: str, worker: str) -> str:
    """``url`` with the Redis database of xdist worker ``worker``."""
    index = int(worker.removeprefix("gw") or 0)
    if index == 0:
        return url
    base, _, db = url.rpartition("/")
    if not db.isdigit():
        base, db = url.rstrip("/"), "0"
    spare = [n for n in SPARE_REDIS_DBS if n != int(db)]
    if index > len(spare):
        raise RuntimeError(f"no spare Redis database for pytest-xdist worker {worker}")
    return f"{base}/{spare[index - 1]}"


# Once per worker: its subprocesses inherit what it set.
if WORKER and os.environ.get("LEDGERFLOW_TEST_WORKER") != WORKER:
    os.environ["LEDGERFLOW_TEST_WORKER"] = WORKER
    worker_dir = os.path.join(os.environ["LEDGERFLOW_DATA_DIR"], WORKER)
    os.makedirs(worker_dir, exist_ok=True)
    os.environ["LEDGERFLOW_DATA_DIR"] = worker_dir
    os.environ["REDIS_URL"] = worker_redis_url(os.environ["REDIS_URL"], WORKER)

from config.settings import *  # noqa: E402, F403

# Tests log in many users; a fast hasher keeps them quick. Never in production.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The live server's threads must not keep connections open past a test, or
# the test database cannot be dropped at the end.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
