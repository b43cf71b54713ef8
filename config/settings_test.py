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


from config.settings import *  # noqa: E402, F403

# Tests log in many users; a fast hasher keeps them quick. Never in production.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The live server's threads must not keep connections open past a test, or
# the test database cannot be dropped at the end.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
