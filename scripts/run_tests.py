#!/usr/bin/env python3
"""The one test command: ``python3 scripts/run_tests.py [--fast] [PYTEST ARGS...]``.

1. creates/refreshes ``.venv`` with the project and its dev extra;
2. provisions the system tools the tests use (ffmpeg/ffprobe, PostgreSQL server binaries,
   Prometheus): as root it installs them with apt-get; otherwise it prints exactly what to install.
   Under ``CI=true`` a tool that is still missing is a failure (exit 7), never a skip;
3. runs ruff (lint + format check), mypy, then pytest with coverage and test durations.
   Test fixtures start the servers they need (PostgreSQL primary and hot standby, Prometheus)
   on loopback and stop them afterwards.

``--fast`` leaves out tests marked ``slow``.  Exit code: the first failing step's code.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# scripts/ is sys.path[0] when this file runs as a script, so the stdlib-only helper imports directly.
from _bootstrap import ROOT, apt_install, ensure_venv, install_hint, say, venv_env

# tool -> Debian package providing it
SYSTEM_TOOLS: dict[str, str] = {
    "ffmpeg": "ffmpeg",
    "ffprobe": "ffmpeg",
    "initdb": "postgresql",
    "prometheus": "prometheus",
    "aplay": "alsa-utils",  # for its /usr/share/sounds/alsa/*.wav: real speech the loudness tests render
    "redis-server": "redis-server",  # the Celery engine's broker in the worker tests
    "chromium": "chromium",  # opens the HTML reports in the report tests
}
EXIT_TOOL_MISSING = 7


def _pg_bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return str(Path(found[-1]).parent)
    initdb = shutil.which("initdb")
    return str(Path(initdb).resolve().parent) if initdb else None


def _missing_tools() -> list[str]:
    missing = []
    for tool in SYSTEM_TOOLS:
        if tool == "initdb":
            if _pg_bindir() is None:
                missing.append(tool)
        elif shutil.which(tool) is None:
            missing.append(tool)
    return missing


def provision(ci: bool) -> int:
    missing = _missing_tools()
    if missing:
        apt_install(sorted({SYSTEM_TOOLS[t] for t in missing}))
        missing = _missing_tools()
    if missing:
        packages = sorted({SYSTEM_TOOLS[t] for t in missing})
        message = f"missing system tools: {', '.join(missing)}. Install them with: {install_hint(packages)}"
        if ci:
            say(f"ERROR: {message} (CI=true: a missing tool is a failure)")
            return EXIT_TOOL_MISSING
        say(f"WARNING: {message}; tests that need them will be skipped (they fail under CI=true).")
    return 0


def _run(step: str, argv: list[str], env: dict[str, str]) -> int:
    say(f"{step}: {' '.join(argv)}")
    started = time.monotonic()
    rc = subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode
    say(f"{step}: exit {rc} after {time.monotonic() - started:.1f}s")
    return rc


def main(argv: list[str]) -> int:
    ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    fast = "--fast" in argv
    pytest_args = [a for a in argv if a != "--fast"]
    py = str(ensure_venv("dev"))
    rc = provision(ci)
    if rc:
        return rc
    env = venv_env()
    pg = _pg_bindir()
    if pg:
        env.setdefault("MONTAGE_TEST_PG_BIN", pg)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    steps = [
        ("ruff", [py, "-m", "ruff", "check", "."]),
        ("ruff-format", [py, "-m", "ruff", "format", "--check", "."]),
        ("mypy", [py, "-m", "mypy", "montage"]),
    ]
    for step, cmd in steps:
        rc = _run(step, cmd, env)
        if rc:
            return rc
    Path(ROOT / "var").mkdir(exist_ok=True)
    cmd = [
        py,
        "-m",
        "pytest",
        "--durations=30",
        "--cov=montage",
        "--cov-report=term",
        f"--cov-report=xml:{ROOT / 'var' / 'coverage.xml'}",
        f"--junitxml={ROOT / 'var' / 'junit.xml'}",
    ]
    if fast:
        cmd += ["-m", "not slow"]
    rc = _run("pytest", cmd + pytest_args, env)
    if rc == 5:
        say("pytest collected no tests: that is a failure")
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
