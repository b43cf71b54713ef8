"""Where the client keeps its URL and token: $LEDGERFLOW_CONFIG, or
$XDG_CONFIG_HOME/ledgerflow/config.json (~/.config by default), mode 0600.
LEDGERFLOW_URL and LEDGERFLOW_TOKEN, when set, win over the file (for CI)."""

import json
import os
from pathlib import Path


def path() -> Path:
    given = os.environ.get("LEDGERFLOW_CONFIG")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ledgerflow" / "config.json"


def save(url: str, token: str) -> Path:
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 from the start, so the token is never readable by others,
    # not even for a moment; an existing file is narrowed too.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url.rstrip("/"), "token": token}, out)
    return target


def load() -> dict:
    stored: dict = {}
    try:
        stored = json.loads(path().read_text())
    except (OSError, ValueError):
        stored = {}
    url = os.environ.get("LEDGERFLOW_URL") or stored.get("url") or ""
    token = os.environ.get("LEDGERFLOW_TOKEN") or stored.get("token") or ""
    return {"url": url.rstrip("/"), "token": token}
