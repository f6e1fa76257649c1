"""The one subprocess runner: argv lists, a timeout, an own process group, always waited for.

Every child gets its own session (so one ``killpg`` stops it and everything it started), is killed
on timeout or interrupt (SIGTERM first when ``grace_s`` is given, then SIGKILL), and is always
``wait()``-ed for, so no zombie and no orphan is left behind.  ``new_session=False`` keeps the child
in the caller's process group instead: for tools run *inside* a job (ffmpeg under ``montage run``),
so that whoever supervises the job (the worker, the perf measurer) still reaches them with one
``killpg`` and sees them in the job's session; such a child alone is signalled on timeout.  The last
lines of stderr are kept for error messages.  ``{python}`` in an argv means the running interpreter.

:func:`run` runs and waits; :func:`spawn` + :func:`stop` are the two halves for a child that runs in
the background (a server on loopback, a renderer the worker supervises).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from montage.errors import ToolMissing

TIMEOUT_RC = 124  # like coreutils timeout(1); recorded, never confused with success
TAIL_LINES = 400
PR_SET_PDEATHSIG = 1

LineCallback = Callable[[str], None]
# pid -> whether spawn() gave it its own process group (pids are only reused after the reap, and a
# reused pid is re-registered by the next spawn()).
_OWN_GROUP: dict[int, bool] = {}


@dataclass(frozen=True)
class Completed:
    """What a finished child did.  ``stderr`` holds only its last lines (all output goes to ``log``
    when one was given)."""

    argv: list[str]
    returncode: int
    duration_s: float
    timed_out: bool
    stdout: str = ""
    stderr: str = ""
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of stderr (of the log when output went to one)."""
        if self.log is not None:
            try:
                text = self.log.read_text(encoding="utf-8", errors="replace")
            except OSError:
                return ""
        else:
            text = self.stderr
        return "\n".join(text.rstrip().splitlines()[-lines:])


def expand(argv: Sequence[str]) -> list[str]:
    """``{python}`` -> the running interpreter."""
    return [sys.executable if a == "{python}" else str(a) for a in argv]


def child_env(env: Mapping[str, str] | None = None, unset_prefixes: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment minus variables starting with ``unset_prefixes``, plus ``env``."""
    merged = {k: v for k, v in os.environ.items() if not (unset_prefixes and k.startswith(tuple(unset_prefixes)))}
    if env:
        merged.update(env)
    return merged


def set_pdeathsig(sig: int = signal.SIGKILL) -> None:  # pragma: no cover - runs in the child before exec
    """``prctl(PR_SET_PDEATHSIG, sig)``: the child gets ``sig`` when its parent *thread* dies (even by
    SIGKILL).  Linux only; elsewhere a no-op.  Only the direct child is covered, not its children."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when the process calling Popen dies, including a parent
    that died between fork and the ``prctl`` (then the child signals itself at once)."""
    parent = os.getpid()

    def preexec() -> None:  # pragma: no cover - runs in the child between fork and exec
        set_pdeathsig(sig)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    unset_prefixes: Sequence[str] = (),
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] | None = None,
    pdeathsig: bool | signal.Signals = False,
    new_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session; a missing or non-executable program is :class:`ToolMissing`.

    ``env`` overlays the inherited environment (after dropping ``unset_prefixes``).  ``pdeathsig``:
    the child gets that signal (``True``: SIGKILL) when this process dies (:func:`die_with_parent`).
    ``new_session=False`` keeps the child in the caller's process group (a terminal's Ctrl-C reaches
    it).  The caller owns the child: end it with :func:`stop` (or :func:`run`, which does all of this).
    """
    full = expand(argv)
    try:
        child = subprocess.Popen(
            full,
            cwd=cwd,
            env=child_env(env, unset_prefixes),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=new_session,
            preexec_fn=_preexec(pdeathsig),
        )
    except FileNotFoundError:
        raise ToolMissing(f"{full[0]!r} is not installed or not on PATH (needed to run: {' '.join(full)})") from None
    except PermissionError:
        raise ToolMissing(f"{full[0]!r} is not executable (needed to run: {' '.join(full)})") from None
    _OWN_GROUP[child.pid] = new_session
    return child


def _preexec(pdeathsig: bool | signal.Signals) -> Callable[[], None] | None:
    if pdeathsig is False:
        return None
    return die_with_parent(signal.SIGKILL if pdeathsig is True else pdeathsig)


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the child's process group when it leads one, else to the child alone (never to
    the caller's own group); no error when it is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        own = _OWN_GROUP.get(proc.pid)
        if own is None:  # not started by spawn(): ask the kernel (only works while the child exists)
            own = os.getpgid(proc.pid) == proc.pid
        if own:  # the group outlives its leader while descendants remain: killpg still reaches them
            os.killpg(proc.pid, sig)
        elif proc.returncode is None:
            proc.send_signal(sig)


def stop(proc: subprocess.Popen[bytes], grace_s: float = 0.0) -> int:
    """End the child's group: SIGTERM and up to ``grace_s`` to exit (when > 0), then SIGKILL; always waits.

    Returns the child's exit code (negative: the signal that ended it).
    """
    if proc.poll() is None and grace_s > 0:
        kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    kill_group(proc, signal.SIGKILL)  # also reaches descendants that outlived the leader
    rc = proc.wait()
    _OWN_GROUP.pop(proc.pid, None)
    return rc


def _pump(stream: IO[bytes], sink: Callable[[str], None]) -> None:
    for raw in stream:
        sink(raw.decode("utf-8", "replace").rstrip("\r\n"))


def run(
    argv: Sequence[str],
    *,
    timeout_s: float,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    unset_prefixes: Sequence[str] = (),
    log: Path | None = None,
    on_stdout_line: LineCallback | None = None,
    grace_s: float = 0.0,
    pdeathsig: bool | signal.Signals = False,
    new_session: bool = True,
    tail_lines: int = TAIL_LINES,
) -> Completed:
    """Run ``argv`` to completion (or ``timeout_s``) and return what happened; never raises for an exit code.

    Output: with ``log``, stdout and stderr both go to that file; else stdout is returned (or fed line
    by line to ``on_stdout_line``) and the last ``tail_lines`` lines of stderr are kept.  A timeout
    kills the group and reports ``returncode`` :data:`TIMEOUT_RC` with ``timed_out``; an interrupt
    (KeyboardInterrupt, a signal handler's exception) kills the group and re-raises.
    """
    started = time.monotonic()
    out_lines: list[str] = []
    err_lines: deque[str] = deque(maxlen=tail_lines)
    threads: list[threading.Thread] = []
    log_fh: IO[bytes] | None = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log_fh = log.open("wb")
    try:
        if log_fh is not None:
            proc = spawn(argv, cwd=cwd, env=env, unset_prefixes=unset_prefixes, stdout=log_fh,
                         stderr=subprocess.STDOUT, pdeathsig=pdeathsig, new_session=new_session)  # fmt: skip
        else:
            proc = spawn(argv, cwd=cwd, env=env, unset_prefixes=unset_prefixes, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, pdeathsig=pdeathsig, new_session=new_session)  # fmt: skip
            assert proc.stdout is not None and proc.stderr is not None
            threads = [
                threading.Thread(target=_pump, args=(proc.stdout, on_stdout_line or out_lines.append), daemon=True),
                threading.Thread(target=_pump, args=(proc.stderr, err_lines.append), daemon=True),
            ]
            for t in threads:
                t.start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop(proc, grace_s)
            rc = TIMEOUT_RC
        except BaseException:
            stop(proc, grace_s)
            raise
        finally:
            if proc.poll() is None:
                stop(proc, grace_s)
            proc.wait()
            _OWN_GROUP.pop(proc.pid, None)
            for t in threads:
                t.join(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    finally:
        if log_fh is not None:
            log_fh.close()
    return Completed(
        argv=expand(argv),
        returncode=rc,
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        stdout="\n".join(out_lines) + ("\n" if out_lines else ""),
        stderr="\n".join(err_lines),
        log=log,
    )


def run_logged(
    argv: Sequence[str],
    log: Path,
    cwd: Path,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    unset_prefixes: Sequence[str] = (),
) -> Completed:
    """:func:`run` with stdout+stderr to ``log`` (the shape the ops checks and steps use)."""
    return run(argv, timeout_s=timeout_s, cwd=cwd, env=env, unset_prefixes=unset_prefixes, log=log)
