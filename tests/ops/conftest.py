"""Fixture roadmaps in temporary repositories: the engine's tests never run the real phases."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from montage.ops.cli import main

PY = sys.executable


@dataclass
class Repo:
    root: Path

    @property
    def phases(self) -> Path:
        return self.root / "phases"

    @property
    def proofs(self) -> Path:
        return self.root / "proofs"

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def phase(self, name: str, text: str) -> Path:
        return self.write(f"phases/{name}", text)

    def git(self, *args: str) -> str:
        out = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True, timeout=60, check=True)
        return out.stdout

    def commit_all(self, message: str = "commit") -> None:
        self.git("add", "-A")
        self.git("commit", "-qm", message)

    def ops(self, *args: str) -> int:
        """``python -m montage.ops ARGS`` in-process against this repository."""
        return main([*args, "--repo-root", str(self.root)])

    def snapshot(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.root).as_posix(): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(self.root).parts
        }


def simple_phase(pid: int, slug: str, gate: str = "", extra: str = "", deps: str | None = None) -> str:
    """A minimal valid phase file; ``gate`` defaults to one passing command check."""
    gate = (
        gate
        or """
    gate:
      - id: ok
        check: command
        with: {argv: ["{python}", "-c", "print('fine')"], output_pattern: "fine"}
    """
    )
    dep_line = f"depends_on: {deps}\n" if deps is not None else ""
    head = f"id: {pid}\nslug: {slug}\ntitle: Phase {pid}\ngoal: test phase {pid}\n{dep_line}"
    return head + textwrap.dedent(extra) + textwrap.dedent(gate)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    root = tmp_path / "repo"
    root.mkdir()
    r = Repo(root)
    r.git("init", "-q")
    r.git("config", "user.email", "ops@example.invalid")
    r.git("config", "user.name", "ops tests")
    r.write(".gitignore", "proofs/*/runs/\nproofs/.locks/\nproofs/.cache/\nphases/.index.json\nvar/\n")
    r.write("src/app.py", "def add(a, b):\n    return a + b\n")
    monkeypatch.setenv("MONTAGE_OPS__FLAGS_FILE", str(root / "var" / "flags.json"))
    monkeypatch.delenv("MONTAGE_OPS__PHASES_DIR", raising=False)
    monkeypatch.delenv("MONTAGE_OPS__BUNDLES_DIR", raising=False)
    # No signing key of the machine's user: a test that signs creates its own (tests/ops/test_signing.py).
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("MONTAGE_OPS__SIGNING_KEY", "MONTAGE_OPS__SIGNING_KEY_PEM", "MONTAGE_OPS__REQUIRE_SIGNATURES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(root)
    return r


@pytest.fixture
def two_phases(repo: Repo) -> Repo:
    repo.phase("00-first.yaml", simple_phase(0, "first", extra='inputs: ["src/*"]\n'))
    repo.phase("01-second.yaml", simple_phase(1, "second"))
    return repo


def run_module(
    args: list[str], cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [PY, "-m", "montage.ops", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


RunModule = Callable[..., subprocess.CompletedProcess[str]]
