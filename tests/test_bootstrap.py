"""scripts/_bootstrap.py: the first run's virtual environment, on a bare Debian Python."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "_bootstrap.py"


def _copy(tmp_path: Path) -> ModuleType:
    """The bootstrap as if the repository were ``tmp_path`` (its ROOT is the script's parent's parent)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "_bootstrap.py")
    spec = importlib.util.spec_from_file_location("bootstrap_copy", tmp_path / "scripts" / "_bootstrap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_venv_without_pip_is_rebuilt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A .venv without pip (what an earlier failed setup leaves) is rebuilt with pip, not reused into a traceback."""
    boot = _copy(tmp_path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(boot.VENV)], check=True, timeout=300)
    assert (boot.VENV / "bin" / "python").exists() and not boot.has_pip(boot.VENV)
    assert boot.make_venv(boot.VENV) is True
    assert boot.has_pip(boot.VENV)
    assert "has no working pip" in capsys.readouterr().out
    assert boot.make_venv(boot.VENV) is False  # a good one is kept


class DebianWithoutEnsurepip(venv.EnvBuilder):
    """Simulated (the shared machine's ensurepip cannot be removed): what Debian's venv does without python3-venv."""

    def _setup_pip(self, context: object) -> None:
        print("The virtual environment was not created successfully because ensurepip is not\navailable.")
        sys.exit(1)


def test_missing_ensurepip_shows_the_projects_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    boot = _copy(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        boot.make_venv(boot.VENV, builder=DebianWithoutEnsurepip)
    assert stopped.value.code == 7
    captured = capsys.readouterr()
    assert "python3-venv" in captured.err and "--no-install-recommends" in captured.err
    assert "ensurepip is not" in captured.err  # the cause, in the project's one paragraph
    assert "was not created successfully" not in captured.out  # Debian's own text is not shown on its own
    assert not boot.VENV.exists()  # no half-built .venv stays behind


@pytest.mark.parametrize(("root", "sudo", "expected"), [
    (True, False, "apt-get install --no-install-recommends python3-venv"),
    (False, True, "sudo apt-get install --no-install-recommends python3-venv"),
    (False, False, "as root: apt-get install --no-install-recommends python3-venv"),
])  # fmt: skip
def test_install_hint_works_for_this_user(
    root: bool, sudo: bool, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boot = _copy(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    if sudo:
        (bindir / "sudo").write_text("#!/bin/sh\nexit 0\n")
        os.chmod(bindir / "sudo", 0o755)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(boot, "is_root", lambda: root)
    assert boot.install_hint(["python3-venv"]) == expected
