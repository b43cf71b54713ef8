"""Which packages may import which: the import-linter contracts in
pyproject.toml hold, and each of them goes red on the import it forbids.

The red cases run ``lint-imports`` on a copy of the Python sources with one
forbidden import added, so the real tree is never touched.
"""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runs", "flows", "connectors", "approvals", "config", "fakeapi")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def contract_names() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [contract["name"] for contract in config["tool"]["importlinter"]["contracts"]]


def test_every_layering_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    kept = [line for line in result.stdout.splitlines() if " KEPT" in line]
    for name in contract_names():
        assert any(line.startswith(f"{name} KEPT") for line in kept), (name, result.stdout)
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """A copy of the Python sources and the contracts, to break on purpose."""
    copy = tmp_path_factory.mktemp("sources")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            copy / package,
            ignore=shutil.ignore_patterns("node_modules", "editor", "__pycache__", "*.pyc"),
        )
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


@pytest.mark.parametrize(
    ("module", "forbidden_import", "complaint"),
    [
        (
            "runs/ground/clock.py",
            "import flows.models",
            "runs.ground is not allowed to import flows",
        ),
        (
            "runs/ground/projectors.py",
            "import runs.driver",
            "runs.ground is not allowed to import runs.driver",
        ),
        (
            "runs/decider.py",
            "import django.db",
            "runs.decider is not allowed to import django",
        ),
        (
            "flows/services.py",
            "import connectors.triggers.bindings",
            "flows.services is not allowed to import connectors.triggers",
        ),
        (
            "runs/services.py",
            "import approvals.projection",
            "runs is not allowed to import approvals",
        ),
        ("runs/sweeper.py", "import config.urls", "runs is not allowed to import config"),
        (
            "approvals/services.py",
            "import connectors.approval",
            "approvals is not allowed to import connectors",
        ),
        ("runs/wakeups.py", "import runs.tasks", "No cycles are allowed in runs"),
        (
            "connectors/triggers/intake.py",
            "import connectors.triggers.projection",
            "No cycles are allowed in connectors.triggers",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(sources, module, forbidden_import, complaint):
    path = sources / module
    original = path.read_text()
    path.write_text(f"{original}\n{forbidden_import}\n")
    try:
        result = lint_imports(sources)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    assert complaint in result.stdout, result.stdout


def test_the_untouched_copy_keeps_every_contract(sources):
    # The red cases above are red because of their one import, not the copy.
    result = lint_imports(sources)
    assert result.returncode == 0, result.stdout + result.stderr
