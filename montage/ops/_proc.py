"""Run one command: argv list, timeout, output to a file, always waited for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from montage.errors import ToolMissing

TIMEOUT_RC = 124  # like coreutils timeout(1); recorded, never confused with success


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    duration_s: float
    timed_out: bool
    log: Path

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def expand(argv: Sequence[str]) -> list[str]:
    """``{python}`` -> the running interpreter."""
    return [sys.executable if a == "{python}" else a for a in argv]


def run_logged(
    argv: Sequence[str],
    log: Path,
    cwd: Path,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    unset_prefixes: Sequence[str] = (),
) -> Completed:
    """Run ``argv`` with stdout+stderr to ``log``; kill the process group on timeout or interrupt.

    ``unset_prefixes`` drops inherited environment variables (e.g. an outer coverage run's).
    """
    full = expand(argv)
    log.parent.mkdir(parents=True, exist_ok=True)
    merged_env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(unset_prefixes))}
    if env:
        merged_env.update(env)
    started = time.monotonic()
    with log.open("wb") as out:
        try:
            proc = subprocess.Popen(
                full, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=merged_env, start_new_session=True
            )
        except FileNotFoundError:
            raise ToolMissing(
                f"{full[0]!r} is not installed or not on PATH (needed to run: {' '.join(full)})"
            ) from None
        except PermissionError:
            raise ToolMissing(f"{full[0]!r} is not executable (needed to run: {' '.join(full)})") from None
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            rc = TIMEOUT_RC
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            proc.wait()
    return Completed(full, rc, time.monotonic() - started, timed_out, log)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
