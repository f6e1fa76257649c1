"""Interrupting phase.run (kill -9, Ctrl-C, SIGTERM) never leaves a PASS bundle."""

from __future__ import annotations

import contextlib
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _ops_children(repo: Repo) -> list[int]:
    """`python -m montage.ops` processes running in this test's repository."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if b"montage.ops" in cmd and Path(os.readlink(f"/proc/{entry}/cwd")) == repo.root:
                found.append(int(entry))
        except OSError:
            continue
    return found


def _wait_gone(pids: list[int], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            pytest.fail(f"{what} outlived its killed parent by {timeout:.0f} s (pids {pids})")
        time.sleep(0.1)


@pytest.mark.slow
def test_kill_9_of_invoke_takes_the_ops_child_with_it_and_publishes_nothing(repo: Repo) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first", extra=STEP))
    invoke = Path(sys.executable).with_name("invoke")
    project = Path(__file__).resolve().parents[2]
    env = dict(os.environ, MONTAGE_REPO_ROOT=str(repo.root))
    proc = subprocess.Popen(
        [str(invoke), "--search-root", str(project), "phase.run", "0"],
        cwd=repo.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (repo.root / "step.pid").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    children = _ops_children(repo)
    assert children, "no montage.ops child found"
    proc.kill()
    proc.wait()
    # PR_SET_PDEATHSIG: the ops child is interrupted, stops its step and removes its half-built bundle.
    _wait_gone(children, "the montage.ops child")
    _wait_gone([int((repo.root / "step.pid").read_text())], "the phase's step")
    _no_bundle(repo)
    assert not list((repo.proofs / "phase-00").glob(".tmp-*"))


def test_a_run_whose_launcher_died_does_not_publish(repo: Repo) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first"))
    gone = subprocess.Popen(["true"])
    gone.wait()
    # As if invoke (pid `gone`) had started this run and died: the child is now someone else's.
    env = dict(os.environ, MONTAGE_OPS_PARENT_PID=str(gone.pid))
    done = subprocess.run([sys.executable, "-m", "montage.ops", "run", "0"], cwd=repo.root, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 130, done.stderr
    assert f"launching process (pid {gone.pid}) is gone" in done.stderr
    _no_bundle(repo)
    assert not list((repo.proofs / "phase-00").glob(".tmp-*"))
    assert repo.ops("run", "0") == 0  # without the variable (a run by hand) it publishes


@pytest.mark.slow
def test_sigint_stops_a_run_launched_with_sigint_ignored(repo: Repo) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first", extra=STEP))
    # A script's background job starts with SIGINT ignored; Python then installs no handler for it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "montage.ops", "run", "0"], cwd=repo.root, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (repo.root / "step.pid").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        with contextlib.suppress(ProcessLookupError):
            os.kill(int((repo.root / "step.pid").read_text()), signal.SIGKILL)
        pytest.fail("SIGINT did nothing: the run was started with SIGINT ignored")
    assert proc.returncode == 130, err
    _no_bundle(repo)
    _step_gone(repo)
