"""How much memory this process may still use, read from its own cgroup.

psutil alone reports the host, and a container sized below the host then gets OOM-killed.  This
module reads the process's own cgroup instead, through :mod:`montage.core.cgroup` (v2 or v1, every
visible ancestor, the binding level is the one with the least headroom, working set = usage minus
the inactive file cache).

When no limit is set anywhere, the host's memory (psutil: total, available) is used and
``MemoryReading.source`` says ``host``.  ``settings.memory.limit_mb`` overrides the limit.

Every path is relative to a ``root`` parameter so tests can build fake ``/proc`` and
``/sys/fs/cgroup`` trees.  MB here means MiB (1,048,576 bytes).  Nothing runs at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from montage.core.cgroup import CgroupReadError, NoLimit, read_memory_limit
from montage.errors import UsageError

if TYPE_CHECKING:
    from montage.settings import Settings

MIB = 1024 * 1024
MemoryReadError = CgroupReadError  # the name this module's callers know


@dataclass(frozen=True)
class MemoryReading:
    """One reading of the memory this process may use (MiB)."""

    limit_mb: float
    used_mb: float  # working set: usage minus inactive file cache
    available_mb: float  # limit_mb - used_mb, never negative
    source: str  # "cgroup v2 <path>", "cgroup v1 <path>" or "host (...)"
    override_mb: int | None = None  # settings.memory.limit_mb when it replaced the detected limit


def _host_reading(reason: str) -> MemoryReading:
    import psutil

    memory = psutil.virtual_memory()
    limit = memory.total / MIB
    available = memory.available / MIB
    return MemoryReading(
        limit_mb=limit,
        used_mb=max(0.0, limit - available),
        available_mb=available,
        source=f"host (psutil /proc/meminfo; {reason})",
    )


def _detect(root: Path) -> MemoryReading:
    found = read_memory_limit(root)
    if isinstance(found, NoLimit):
        return _host_reading(found.reason)
    limit = found.limit_bytes / MIB
    used = found.used_bytes / MIB
    return MemoryReading(limit_mb=limit, used_mb=used, available_mb=max(0.0, limit - used), source=found.source)


def read_memory(settings: Settings | None = None, *, root: Path = Path("/")) -> MemoryReading:
    """The memory this process may use: cgroup limit (smallest headroom up the tree) or the host.

    ``settings`` is optional: when given and ``settings.memory.limit_mb`` is set, that value
    replaces the detected limit (the working set is still measured).  Raises
    :class:`MemoryReadError` (exit code INCONCLUSIVE) for unreadable or garbled files.
    """
    reading = _detect(root)
    override = settings.memory.limit_mb if settings is not None else None
    if override is None:
        return reading
    return MemoryReading(
        limit_mb=float(override),
        used_mb=reading.used_mb,
        available_mb=max(0.0, override - reading.used_mb),
        source=f"settings.memory.limit_mb={override} (detected: {reading.source}, {reading.limit_mb:.0f} MB)",
        override_mb=override,
    )


def get_available_mb(settings: Settings | None = None, *, root: Path = Path("/")) -> float:
    """MiB this process may still allocate (see :func:`read_memory`)."""
    return read_memory(settings, root=root).available_mb


def can_admit(
    job_mb: float, reading: MemoryReading, reserve_mb: float, *, reserved_mb: float = 0.0
) -> tuple[bool, str]:
    """Whether a job estimated at ``job_mb`` fits, and why: the one admission formula (admission.py)::

        free = limit - reserve_mb - reserved_mb (the reservations of the jobs already running here)

    The working set is not subtracted: running jobs are counted by their reservations, including the
    part of their peak they have not reached yet.
    """
    if job_mb < 0 or reserve_mb < 0 or reserved_mb < 0:
        raise UsageError(
            f"job_mb={job_mb}, reserve_mb={reserve_mb} and reserved_mb={reserved_mb} must not be negative."
        )
    spare = reading.limit_mb - reserve_mb - reserved_mb
    figures = (
        f"job needs {job_mb:.0f} MB; {reading.limit_mb:.0f} MB limit minus {reserve_mb:.0f} MB reserve minus "
        f"{reserved_mb:.0f} MB reserved by running jobs leaves {spare:.0f} MB ({reading.source})"
    )
    if job_mb <= spare:
        return True, f"admit: {figures}"
    return False, f"refuse: {figures}"
