"""The demo's fake APIs' ports (payments, CRM), chosen once per data directory.

`seed_demo` freezes the API's URL into a published flow version, so the port
must not change between starts: it is kept in ``<data dir>/demo-payments-port``.
At first start it is 8765 if that is free, else the next free port above it
(else one the system picks), so two checkouts, or a program that already
holds 8765, do not collide. ``LEDGERFLOW_DEMO_PAYMENTS_PORT`` overrides the
file, and is kept in it. The fake CRM's port (``fakeapi/crm.py``, the
"Nightly CRM sync" flow's) is kept the same way in ``demo-crm-port`` (8766
or the next free port that is not the payments API's;
``LEDGERFLOW_DEMO_CRM_PORT`` overrides it).
"""

import os
import socket
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.env import env_int

PREFERRED = 8765
FILENAME = "demo-payments-port"
CRM_PREFERRED = 8766
CRM_FILENAME = "demo-crm-port"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick(preferred: int = PREFERRED, avoid: frozenset[int] = frozenset()) -> int:
    for port in range(preferred, preferred + 100):
        if port not in avoid and _free(port):
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _store(path: Path, port: int) -> None:
    # Written aside and renamed, so a concurrent reader never sees half a number.
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    staged.write_text(f"{port}\n")
    os.replace(staged, path)


def _kept_port(
    data_dir: Path, filename: str, variable: str, preferred: int, avoid: frozenset[int]
) -> int:
    path = Path(data_dir) / filename
    if os.environ.get(variable, "").strip():
        port = env_int(variable, 0)
        if not 0 < port < 65536:
            raise ImproperlyConfigured(f"{variable}: {port} is not a port")
        if not path.exists() or path.read_text().strip() != str(port):
            _store(path, port)
        return port
    if path.exists():
        return int(path.read_text().strip())
    port = _pick(preferred, avoid)
    _store(path, port)
    return port


def payments_port(data_dir: Path) -> int:
    return _kept_port(data_dir, FILENAME, "LEDGERFLOW_DEMO_PAYMENTS_PORT", PREFERRED,
                      frozenset())  # fmt: skip


def crm_port(data_dir: Path) -> int:
    avoid = frozenset({payments_port(data_dir)})
    return _kept_port(data_dir, CRM_FILENAME, "LEDGERFLOW_DEMO_CRM_PORT", CRM_PREFERRED, avoid)


def crm_url(data_dir: Path) -> str:
    return f"http://127.0.0.1:{crm_port(data_dir)}"


def payments_url(data_dir: Path) -> str:
    return f"http://127.0.0.1:{payments_port(data_dir)}"
