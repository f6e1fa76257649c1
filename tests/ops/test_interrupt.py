"""Interrupting phase.run (kill -9, Ctrl-C, SIGTERM) never leaves a PASS bundle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import Repo, simple_phase

STEP = """
steps:
  - id: long
    run: ["{python}", "-c", "import os, time; open('step.pid', 'w').write(str(os.getpid())); time.sleep(60)"]
    timeout_s: 120
"""


def _start(repo: Repo) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "montage.ops", "run", "0"],
        cwd=repo.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (repo.root / "step.pid").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    time.sleep(0.2)
    return proc


def _no_bundle(repo: Repo) -> None:
    phase_dir = repo.proofs / "phase-00"
    assert not (phase_dir / "latest").exists()
    runs = phase_dir / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def _step_gone(repo: Repo) -> None:
    pid = int((repo.root / "step.pid").read_text())
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the step process outlived the interrupted run")


@pytest.mark.slow
def test_kill_9_leaves_no_bundle_and_next_run_cleans_up(repo: Repo) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first", extra=STEP))
    proc = _start(repo)
    proc.kill()
    proc.communicate(timeout=30)
    try:
        _no_bundle(repo)
        leftovers = list((repo.proofs / "phase-00").glob(".tmp-*"))
        assert leftovers, "kill -9 cannot clean up; the half-built bundle stays hidden in a .tmp- directory"
    finally:
        os.kill(int((repo.root / "step.pid").read_text()), signal.SIGKILL)
    repo.phase("00-first.yaml", simple_phase(0, "first"))
    assert repo.ops("run", "0") == 0
    assert not list((repo.proofs / "phase-00").glob(".tmp-*"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_exit_130_without_bundle(repo: Repo, sig: signal.Signals) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first", extra=STEP))
    proc = _start(repo)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    _no_bundle(repo)
    assert not list((repo.proofs / "phase-00").glob(".tmp-*"))
    _step_gone(repo)


def test_lock_file_location_is_ignored_by_git(repo: Repo) -> None:
    ignored = Path(repo.root / ".gitignore").read_text()
    assert "proofs/.locks/" in ignored and "proofs/*/runs/" in ignored
