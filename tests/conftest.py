"""Shared fixtures.

``require_tool`` is how a test asks for an external tool: locally a missing tool skips the test
with the exact install command; under ``CI=true`` it fails, because CI must provision everything.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def install_line(*packages: str) -> str:
    """The install line scripts/_bootstrap.py prints for this user (plain as root, ``sudo`` when there is
    one, else "as root:"; ``--no-install-recommends``), so a skip says what run_tests.py says."""
    spec = importlib.util.spec_from_file_location(
        "_montage_bootstrap", Path(__file__).resolve().parent.parent / "scripts" / "_bootstrap.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.install_hint(list(packages)))


def missing_tool(message: str) -> None:
    """Fail under CI, skip elsewhere, with ``message`` naming what to install."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing tool is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def require_tool() -> Callable[[str, str], str]:
    def _require(name: str, package: str) -> str:
        path = shutil.which(name)
        if path is None:
            missing_tool(f"{name} is not installed; install it with: {install_line(package)}")
        assert path is not None
        return path

    return _require


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> None:
    """No MONTAGE_* / legacy variables leak in from the developer's shell; cwd is a temp dir."""
    for name in list(os.environ):
        if name.startswith("MONTAGE_") or name in {"USE_SETTINGS_V2", "DATABASE_URL", "REPLICA_DATABASE_URL"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
