"""The editor's bundles, as Vite's manifest names them (static/editor/.vite/
manifest.json, written by `make editor`): the editor itself, the read-only
diagrams of the flow and run pages, and the dashboard's chart. A page loads its entry as an external
module script and stylesheet files: nothing inline, so a strict
Content-Security-Policy holds."""

import json
from dataclasses import dataclass, field
from functools import lru_cache

from django.conf import settings
from django.templatetags.static import static

EDITOR = "src/main.tsx"
DIAGRAM = "src/diagram.tsx"
CHART = "src/chart.ts"


@dataclass(frozen=True)
class Bundle:
    script: str = ""
    styles: list[str] = field(default_factory=list)
    # Chunks the entry imports (React, React Flow): fetched alongside it
    # rather than after it has loaded.
    preloads: list[str] = field(default_factory=list)
    missing: str = ""  # why there is no bundle, for the page to say


def manifest_path():
    return settings.BASE_DIR / "static" / "editor" / ".vite" / "manifest.json"


def _imported(manifest: dict, name: str) -> list[str]:
    """The chunks ``name`` imports, depth first, each once."""
    found: list[str] = []
    pending = list(manifest[name].get("imports", []))
    while pending:
        chunk = pending.pop(0)
        if chunk in found or chunk not in manifest:
            continue
        found.append(chunk)
        pending.extend(manifest[chunk].get("imports", []))
    return found


@lru_cache(maxsize=8)
def _read(path: str, mtime: float, name: str) -> Bundle:
    manifest = json.loads(open(path, encoding="utf-8").read())
    if name not in manifest:
        return Bundle(missing=f"the editor's manifest has no entry {name}")
    chunks = _imported(manifest, name)
    # Shared styles sit with the shared chunk, not with the entry.
    styles = [css for chunk in [*chunks, name] for css in manifest[chunk].get("css", [])]
    return Bundle(
        script=static(f"editor/{manifest[name]['file']}"),
        styles=[static(f"editor/{css}") for css in dict.fromkeys(styles)],
        preloads=[static(f"editor/{manifest[chunk]['file']}") for chunk in chunks],
    )


def bundle(name: str) -> Bundle:
    """Read again whenever a rebuild changes the manifest."""
    path = manifest_path()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return Bundle(missing="the editor is not built: run `make editor`")
    return _read(str(path), mtime, name)


def editor_bundle() -> Bundle:
    return bundle(EDITOR)


def diagram_bundle() -> Bundle:
    return bundle(DIAGRAM)


def chart_bundle() -> Bundle:
    return bundle(CHART)
