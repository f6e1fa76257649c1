"""montage.core.proc with real child processes."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from montage.core import proc
from montage.errors import ExitCode, ToolMissing


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone for our purposes once its state is Z
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_output_exit_code_and_python_expansion() -> None:
    done = proc.run(["{python}", "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                    timeout_s=60)  # fmt: skip
    assert done.argv[0] == sys.executable
    assert (done.returncode, done.stdout, done.stderr, done.timed_out, done.ok) == (3, "out\n", "err", False, False)


def test_stderr_keeps_only_the_tail() -> None:
    done = proc.run(["{python}", "-c", "import sys\nfor i in range(1000): print(i, file=sys.stderr)"],
                    timeout_s=60, tail_lines=5)  # fmt: skip
    assert done.stderr.splitlines() == ["995", "996", "997", "998", "999"]
    assert done.tail(2) == "998\n999"


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    """A grandchild that ignores nothing but would outlive its parent is killed too."""
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)\n"
    )
    started = time.monotonic()
    done = proc.run(["{python}", "-c", script], timeout_s=3)
    assert done.timed_out and done.returncode == proc.TIMEOUT_RC
    assert time.monotonic() - started < 60
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_grace_period_lets_the_child_clean_up(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    script = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').write('yes'), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    done = proc.run(["{python}", "-c", script], timeout_s=2, grace_s=10)
    assert done.timed_out and marker.read_text() == "yes"


def test_log_file_env_overlay_and_unset_prefixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COV_CORE_SOURCE", "leak")
    monkeypatch.setenv("KEEP_ME", "kept")
    log = tmp_path / "logs" / "run.log"
    code = "import os; print(os.environ.get('COV_CORE_SOURCE'), os.environ['KEEP_ME'], os.environ['ADDED'])"
    done = proc.run(["{python}", "-c", code], timeout_s=60, log=log, env={"ADDED": "yes"}, unset_prefixes=("COV_",),
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0 and log.read_text() == "None kept yes\n" and done.tail() == "None kept yes"


def test_missing_program_is_tool_missing(tmp_path: Path) -> None:
    with pytest.raises(ToolMissing, match="not installed") as info:
        proc.run([str(tmp_path / "no-such-program")], timeout_s=5)
    assert info.value.exit_code == ExitCode.TOOL_MISSING


def test_interrupt_kills_the_child_and_reraises(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(300)"

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    # A shell starts background jobs with SIGINT ignored, and Python then installs no handler: the
    # interrupt would never arrive (seen when the test command ran as `cmd &`). Install Python's own.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            proc.run(["{python}", "-c", code], timeout_s=120)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not _alive(int(pidfile.read_text()))


def test_pdeathsig_child_dies_with_its_parent(tmp_path: Path) -> None:
    """A parent spawns a child with pdeathsig and is SIGKILLed: the child goes too."""
    pidfile = tmp_path / "child.pid"
    parent = (
        "import time\n"
        "from montage.core import proc\n"
        "c = proc.spawn(['{python}', '-c', 'import time; time.sleep(300)'], pdeathsig=True)\n"
        f"open({str(pidfile)!r}, 'w').write(str(c.pid))\n"
        "time.sleep(300)\n"
    )
    outer = proc.spawn(["{python}", "-c", parent])
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert _alive(child)
        os.kill(outer.pid, signal.SIGKILL)  # only the parent: the child has its own session
        outer.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        proc.stop(outer)
