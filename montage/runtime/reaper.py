"""Reap orphans the service adopted as a child subreaper, and nothing else.

A renderer's own children (ffmpeg) outlive it when it crashes; with ``PR_SET_CHILD_SUBREAPER`` they
are re-parented to the service instead of init, and when they exit they stay zombies until someone
collects them.  A global ``waitpid(-1)`` would do that, but it also steals the exit status of the
service's *own* children that asyncio or ``subprocess`` is waiting for (their ``wait()`` then
fails with ECHILD or reports a wrong code).

So the reaper never waits for an unknown pid.  It scans ``/proc`` and remembers every descendant
whose parent is *another* process (a grandchild or deeper), keyed by (pid, start time) so a recycled
pid is never mistaken for it.  A zombie whose parent is the service is collected with
``waitid(P_PID, pid, WEXITED | WNOHANG)`` only if it was seen earlier with another parent, i.e. it
was adopted.  A direct child the service spawned itself always had the service as its parent, so it
is never touched.  Limit, by design: an orphan born and re-parented between two scans was never seen
with its original parent, so it is left alone (its zombie holds a pid, no memory).

``ZOMBIE_REAPER_ENABLED=false`` in the flags file (phase 6's rollback) turns both the subreaper
attribute and the reaper off.  Linux only; nothing runs at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("montage.reaper")

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
FLAG = "ZOMBIE_REAPER_ENABLED"


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the reaper needs."""

    pid: int
    state: str
    ppid: int
    start_time: int  # clock ticks after boot: with the pid, identifies one process


@dataclass(frozen=True)
class Reaped:
    """One adopted orphan collected: how it ended."""

    pid: int
    exit_code: int | None  # exit status, None when killed by a signal
    signal: int | None


def parse_stat(text: str) -> ProcStat | None:
    """Parse one ``/proc/<pid>/stat`` line; None if it is not one (comm may hold spaces and ')')."""
    head, sep, tail = text.rpartition(")")
    if not sep:
        return None
    pid_text = head.split(" (", 1)[0].strip()
    fields = tail.split()
    # after comm: state(3) ppid(4) ... starttime(22) -> indexes 0, 1, ..., 19
    if len(fields) < 20 or not pid_text.isdigit() or not fields[1].isdigit() or not fields[19].isdigit():
        return None
    return ProcStat(pid=int(pid_text), state=fields[0], ppid=int(fields[1]), start_time=int(fields[19]))


def process_table(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process visible in ``proc``; processes that vanish while being read are skipped."""
    table: dict[int, ProcStat] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            text = (proc / entry / "stat").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        stat = parse_stat(text)
        if stat is not None:
            table[stat.pid] = stat
    return table


def _prctl(option: int, arg: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    value = ctypes.c_int(0)
    if option == PR_GET_CHILD_SUBREAPER:
        rc = libc.prctl(option, ctypes.byref(value), 0, 0, 0)
    else:
        rc = libc.prctl(option, arg, 0, 0, 0)
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return value.value if option == PR_GET_CHILD_SUBREAPER else rc


def set_subreaper(enabled: bool = True) -> None:
    """Make this process a child subreaper (orphaned descendants are re-parented to it)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1 if enabled else 0)


def is_subreaper() -> bool:
    return bool(_prctl(PR_GET_CHILD_SUBREAPER, 0))


_REAPED_TOTAL = 0  # orphans reaped by any OrphanReaper in this process (the montage_orphans_reaped metric)


def reaped_total() -> int:
    return _REAPED_TOTAL


def reaper_enabled(flags_file: Path) -> tuple[bool, str]:
    """Whether the flags file leaves the reaper on (default on), and why (montage.core.flags' rule)."""
    from montage.core.flags import file_enabled

    if file_enabled(flags_file, FLAG):
        return True, f"{FLAG} is not false in {flags_file}"
    return False, f"{FLAG}=false in {flags_file}"


@dataclass
class OrphanReaper:
    """Collects zombies adopted by this process (see the module docstring); call :meth:`scan`."""

    proc: Path = Path("/proc")
    on_reaped: Callable[[Reaped], None] | None = None
    pid: int = field(default_factory=os.getpid)
    reaped: list[Reaped] = field(default_factory=list)
    _adoptable: set[tuple[int, int]] = field(default_factory=set)  # (pid, start time) seen with another parent

    def _descendants(self, table: dict[int, ProcStat]) -> Iterable[ProcStat]:
        children: dict[int, list[ProcStat]] = {}
        for stat in table.values():
            children.setdefault(stat.ppid, []).append(stat)
        stack = list(children.get(self.pid, []))
        while stack:
            stat = stack.pop()
            yield stat
            stack.extend(children.get(stat.pid, []))

    def scan(self) -> list[Reaped]:
        """One pass: remember grandchildren, collect adopted zombies; returns what was reaped."""
        table = process_table(self.proc)
        for stat in self._descendants(table):
            if stat.ppid != self.pid:
                self._adoptable.add((stat.pid, stat.start_time))
        done: list[Reaped] = []
        for stat in table.values():
            key = (stat.pid, stat.start_time)
            if stat.ppid == self.pid and stat.state == "Z" and key in self._adoptable:
                result = self._collect(stat.pid)
                if result is not None:
                    done.append(result)
        alive = {(s.pid, s.start_time) for s in table.values()}
        self._adoptable &= alive
        self.reaped.extend(done)
        return done

    def _collect(self, pid: int) -> Reaped | None:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)
        except ChildProcessError:  # someone else collected it first
            return None
        if info is None:
            return None
        global _REAPED_TOTAL
        _REAPED_TOTAL += 1
        killed = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
        result = Reaped(pid, None if killed else info.si_status, info.si_status if killed else None)
        log.info("reaped adopted orphan pid %d (%s)", pid,
                 f"signal {result.signal}" if killed else f"exit {result.exit_code}")  # fmt: skip
        if self.on_reaped is not None:
            self.on_reaped(result)
        return result

    async def run(self, interval_s: float = 1.0) -> None:
        """Scan every ``interval_s`` until cancelled."""
        while True:
            self.scan()
            await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def reaping(
    flags_file: Path, *, interval_s: float = 1.0, on_reaped: Callable[[Reaped], None] | None = None
) -> AsyncIterator[OrphanReaper | None]:
    """Become a subreaper and reap adopted orphans for the duration; yields None when the flag is off."""
    enabled, why = reaper_enabled(flags_file)
    if not enabled:
        log.warning("zombie reaper off (%s): orphans are not adopted or reaped", why)
        yield None
        return
    try:
        was_subreaper = is_subreaper()
        set_subreaper(True)
    except (OSError, AttributeError) as exc:
        log.warning("zombie reaper off: PR_SET_CHILD_SUBREAPER failed (%s)", exc)
        yield None
        return
    reaper = OrphanReaper(on_reaped=on_reaped)
    task = asyncio.create_task(reaper.run(interval_s))
    log.info("zombie reaper on: pid %d is a child subreaper (%s)", reaper.pid, why)
    try:
        yield reaper
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        reaper.scan()
        if not was_subreaper:  # leave the process as it was: orphans from now on go to init, which reaps them
            with contextlib.suppress(OSError, AttributeError):
                set_subreaper(False)
