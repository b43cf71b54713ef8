"""The editor's bundle, as Vite's manifest names it (static/editor/.vite/
manifest.json, written by `make editor`). The page loads it as external
module script and stylesheet files: nothing inline, so a strict
Content-Security-Policy holds."""

import json
from dataclasses import dataclass, field
from functools import lru_cache

from django.conf import settings
from django.templatetags.static import static

ENTRY = "src/main.tsx"


@dataclass(frozen=True)
class Bundle:
    script: str = ""
    styles: list[str] = field(default_factory=list)
    missing: str = ""  # why there is no bundle, for the page to say


def manifest_path():
    return settings.BASE_DIR / "static" / "editor" / ".vite" / "manifest.json"


@lru_cache(maxsize=4)
def _read(path: str, mtime: float) -> Bundle:
    entry = json.loads(open(path, encoding="utf-8").read()).get(ENTRY)
    if entry is None:
        return Bundle(missing=f"the editor's manifest has no entry {ENTRY}")
    return Bundle(
        script=static(f"editor/{entry['file']}"),
        styles=[static(f"editor/{css}") for css in entry.get("css", [])],
    )


def editor_bundle() -> Bundle:
    """Read again whenever a rebuild changes the manifest."""
    path = manifest_path()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return Bundle(missing="the editor is not built: run `make editor`")
    return _read(str(path), mtime)
