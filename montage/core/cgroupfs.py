"""Create, limit, read and remove memory cgroups (v1 memory controller or v2): the one place that
writes cgroup files.

Callers pass a :class:`Cgroup` (a directory and its version); locating the process's own cgroup is
the reader's job (``/proc/self/cgroup`` + mountinfo).  Every function takes plain paths, so tests run
on fake trees; v2 is exercised on fake trees only on machines whose memory controller is on v1.
Byte counts throughout; standard library only; nothing runs at import time.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger("montage.cgroup")

Version = Literal[1, 2]
V1_UNLIMITED_FLOOR = 1 << 60


class CgroupError(OSError):
    """A cgroup file could not be created, written or read; the message names the file."""


@dataclass(frozen=True)
class Cgroup:
    path: Path
    version: Version

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def label(self) -> str:
        return f"cgroup v{self.version} {self.path}"


@dataclass(frozen=True)
class MemoryCounters:
    """What the kernel counted for one cgroup, each figure with the file it came from."""

    limit_bytes: int | None
    usage_bytes: int | None
    peak_bytes: int | None
    oom_kills: int | None
    failcnt: int | None
    sources: dict[str, str]


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(value)
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot write {value!r} to {path}: {exc.strerror or exc}") from exc


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    value = text.strip()
    if value == "max":
        return None
    return int(value) if value.isascii() and value.isdigit() else None


def _keyed(path: Path, key: str) -> int | None:
    """The value of ``key`` in a flat-keyed file (``memory.events``, ``memory.oom_control``)."""
    text = _read(path)
    if text is None:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return None


def create_child(parent: Cgroup, name: str) -> Cgroup:
    """``parent/name`` (v2: the memory controller enabled for the parent's children first)."""
    if not name or "/" in name or name in (".", ".."):
        raise CgroupError(errno.EINVAL, f"invalid cgroup name {name!r}")
    if parent.version == 2:
        control = parent.file("cgroup.subtree_control")
        if "memory" not in (_read(control) or "").split():
            _write(control, "+memory")
    child = parent.path / name
    try:
        child.mkdir()
    except FileExistsError:
        pass
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot create {child}: {exc.strerror or exc}") from exc
    return Cgroup(child, parent.version)


def set_memory_limit(cgroup: Cgroup, limit_bytes: int, *, swap: bool = False) -> list[str]:
    """Set the memory limit (and, unless ``swap``, no swap); returns notes on what could not be set."""
    notes: list[str] = []
    if cgroup.version == 2:
        _write(cgroup.file("memory.max"), str(limit_bytes))
        if not swap:
            if cgroup.file("memory.swap.max").exists():
                _write(cgroup.file("memory.swap.max"), "0")
            else:
                notes.append(f"{cgroup.file('memory.swap.max')} absent (no swap accounting): swap not limited")
        return notes
    memsw = cgroup.file("memory.memsw.limit_in_bytes")
    # memsw (memory + swap) must stay >= the memory limit: raise it first, lower it last.
    current = _int(cgroup.file("memory.limit_in_bytes"))
    if not swap and memsw.exists() and current is not None and limit_bytes > current:
        _write(memsw, str(limit_bytes))
        _write(cgroup.file("memory.limit_in_bytes"), str(limit_bytes))
    else:
        _write(cgroup.file("memory.limit_in_bytes"), str(limit_bytes))
        if not swap and memsw.exists():
            _write(memsw, str(limit_bytes))
    if not swap and not memsw.exists():
        notes.append(f"{memsw} absent (swap accounting off): swap not limited")
    with contextlib.suppress(CgroupError):
        if not swap:
            _write(cgroup.file("memory.swappiness"), "0")
    return notes


def procs_file(cgroup: Cgroup) -> Path:
    return cgroup.file("cgroup.procs")


def join(cgroup: Cgroup, pid: int = 0) -> None:
    """Move process ``pid`` (0: the caller) into the cgroup."""
    _write(procs_file(cgroup), str(pid or os.getpid()))


def pids(cgroup: Cgroup) -> list[int]:
    text = _read(procs_file(cgroup)) or ""
    return [int(line) for line in text.split() if line.isdigit()]


def counters(cgroup: Cgroup) -> MemoryCounters:
    """Limit, usage, peak, OOM kills and (v1) failcnt from the cgroup's own files."""
    sources: dict[str, str] = {}

    def take(name: str, what: str, value: int | None) -> int | None:
        if value is not None:
            sources[what] = str(cgroup.file(name))
        return value

    if cgroup.version == 2:
        limit = take("memory.max", "limit", _int(cgroup.file("memory.max")))
        usage = take("memory.current", "usage", _int(cgroup.file("memory.current")))
        peak = take("memory.peak", "peak", _int(cgroup.file("memory.peak")))
        ooms = take("memory.events", "oom_kills", _keyed(cgroup.file("memory.events"), "oom_kill"))
        return MemoryCounters(limit, usage, peak, ooms, None, sources)
    raw_limit = _int(cgroup.file("memory.limit_in_bytes"))
    limit = take("memory.limit_in_bytes", "limit", raw_limit if (raw_limit or 0) < V1_UNLIMITED_FLOOR else None)
    usage = take("memory.usage_in_bytes", "usage", _int(cgroup.file("memory.usage_in_bytes")))
    peak = take("memory.max_usage_in_bytes", "peak", _int(cgroup.file("memory.max_usage_in_bytes")))
    ooms = take("memory.oom_control", "oom_kills", _keyed(cgroup.file("memory.oom_control"), "oom_kill"))
    failcnt = take("memory.failcnt", "failcnt", _int(cgroup.file("memory.failcnt")))
    return MemoryCounters(limit, usage, peak, ooms, failcnt, sources)


def reset_peak(cgroup: Cgroup) -> bool:
    """Restart the peak counter (v1 ``memory.max_usage_in_bytes``); False where it cannot be (v2)."""
    if cgroup.version != 1:
        return False
    try:
        _write(cgroup.file("memory.max_usage_in_bytes"), "0")
    except CgroupError:
        return False
    return True


def kill_all(cgroup: Cgroup) -> int:
    """SIGKILL every process in the cgroup (v2 ``cgroup.kill`` when present); returns how many were signalled."""
    members = pids(cgroup)
    if cgroup.version == 2 and cgroup.file("cgroup.kill").exists() and members:
        with contextlib.suppress(CgroupError):
            _write(cgroup.file("cgroup.kill"), "1")
            return len(members)
    for pid in members:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(members)


def remove(cgroup: Cgroup, *, attempts: int = 50, delay_s: float = 0.1) -> str | None:
    """Kill what is left inside, then rmdir (children first), retrying; None when gone, else why not."""
    left: str | None = None
    if cgroup.path.is_dir():
        for child in sorted((p for p in cgroup.path.iterdir() if p.is_dir()), reverse=True):
            left = remove(Cgroup(child, cgroup.version), attempts=attempts, delay_s=delay_s) or left
    for _ in range(attempts):
        kill_all(cgroup)
        try:
            cgroup.path.rmdir()
            return left
        except FileNotFoundError:
            return left
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                return f"cannot remove {cgroup.path}: {exc.strerror or exc}"
        time.sleep(delay_s)
    return f"cannot remove {cgroup.path}: still busy after {attempts} attempts (pids {pids(cgroup)})"


def rmdir_if_empty(cgroup: Cgroup) -> bool:
    """Remove the cgroup only if no process is in it (one rmdir, nothing killed); True when removed.

    The kernel refuses to remove a cgroup that holds a process (EBUSY), so a process that joins
    at the last moment keeps its cgroup instead of being killed."""
    try:
        cgroup.path.rmdir()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
            log.debug("cgroup %s kept: %s", cgroup.path, exc.strerror or exc)
            return False
        raise CgroupError(exc.errno or errno.EIO, f"cannot remove {cgroup.path}: {exc.strerror or exc}") from exc
    return True


def children(parent: Cgroup, prefix: str) -> list[Cgroup]:
    """Child cgroups of ``parent`` whose names start with ``prefix``."""
    if not parent.path.is_dir():
        return []
    found = [p for p in parent.path.iterdir() if p.is_dir() and p.name.startswith(prefix)]
    return [Cgroup(p, parent.version) for p in sorted(found)]
