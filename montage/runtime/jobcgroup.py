"""One memory cgroup per render: ``<own cgroup>/montage-job-<id>``, limited, swap off, always removed.

A runaway render is then OOM-killed alone (the worker and the other jobs keep running), and the
worker reports ``out of memory (peak N MB, limit M MB)`` from the cgroup's own counters instead of
an anonymous exit 137.  The renderer joins its cgroup between fork and exec (``preexec``), so
nothing it starts escapes the limit.

Where no child cgroup can be created (no cgroup filesystem, read-only, not root, a v2 parent that
holds processes), :meth:`JobCgroups.detect` says why once and jobs run without one.  All cgroup
file access goes through :mod:`montage.core.cgroupfs`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from montage.core import cgroupfs
from montage.core.cgroupfs import Cgroup, CgroupError, MemoryCounters

log = logging.getLogger("montage.cgroup")
MIB = 1024 * 1024
PREFIX = "montage-"
JOB_PREFIX = "montage-job-"


def own_memory_cgroup(root: Path = Path("/")) -> tuple[Cgroup | None, str]:
    """The directory of this process's memory cgroup and its version, or None and why."""
    from montage.core.cgroup import own_memory_cgroup as locate

    found = locate(root)
    if isinstance(found, str):
        return None, found
    version, leaf = found
    where = "cgroup v1 memory controller" if version == 1 else "cgroup v2"
    return Cgroup(leaf, version), f"{where} at {leaf}"


def oom_message(counters: MemoryCounters) -> str:
    peak = counters.peak_bytes or counters.usage_bytes or 0
    limit = counters.limit_bytes or 0
    return f"out of memory (peak {peak / MIB:.0f} MB, limit {limit / MIB:.0f} MB)"


@dataclass
class JobCgroup:
    """The cgroup of one running job."""

    cgroup: Cgroup
    limit_bytes: int

    def preexec(self) -> None:  # pragma: no cover - runs in the child between fork and exec
        """Join the cgroup (the caller is the forked child, before exec)."""
        procs = str(cgroupfs.procs_file(self.cgroup))
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def counters(self) -> MemoryCounters:
        return cgroupfs.counters(self.cgroup)

    def oom_killed(self) -> tuple[bool, MemoryCounters]:
        counters = self.counters()
        return bool(counters.oom_kills), counters

    def close(self) -> str | None:
        """Kill what is left and remove the cgroup; None when gone, else why not (logged)."""
        why = cgroupfs.remove(self.cgroup)
        if why is not None:
            log.error("job cgroup left behind: %s", why)
        return why


@dataclass
class JobCgroups:
    """Creates job cgroups under a parent (normally this process's own memory cgroup)."""

    parent: Cgroup | None
    reason: str

    @property
    def available(self) -> bool:
        return self.parent is not None

    @classmethod
    def detect(cls, root: Path = Path("/")) -> JobCgroups:
        """Probe once whether child cgroups can be created here; log the answer."""
        try:
            parent, where = own_memory_cgroup(root)
        except Exception as exc:  # a garbled /proc file must not stop the worker
            parent, where = None, f"cannot locate the process's cgroup: {exc}"
        if parent is not None:
            probe_name = f"{PREFIX}probe-{os.getpid()}"
            try:
                probe = cgroupfs.create_child(parent, probe_name)
                cgroupfs.remove(probe, attempts=3)
            except CgroupError as exc:
                parent, where = None, f"{where}: cannot create a child cgroup ({exc})"
        if parent is None:
            log.warning("per-job memory cgroups unavailable, jobs run without a memory limit: %s", where)
        else:
            log.info("per-job memory cgroups under %s", where)
        return cls(parent, where)

    def create(self, job_id: str, limit_bytes: int) -> JobCgroup | None:
        """A limited cgroup for ``job_id``; None (logged) when cgroups are unavailable or creation fails."""
        if self.parent is None:
            return None
        try:
            cgroup = cgroupfs.create_child(self.parent, f"{JOB_PREFIX}{job_id}")
            for note in cgroupfs.set_memory_limit(cgroup, limit_bytes):
                log.warning("job %s: %s", job_id, note)
        except CgroupError as exc:
            log.error("job %s: no memory cgroup (%s); running it without a limit", job_id, exc)
            return None
        return JobCgroup(cgroup, limit_bytes)

    def leftovers(self) -> list[Cgroup]:
        return [] if self.parent is None else cgroupfs.children(self.parent, PREFIX)

    def job_cgroups(self) -> dict[str, Cgroup]:
        """Every job cgroup under the parent, by job id (this worker's, its siblings', dead workers')."""
        if self.parent is None:
            return {}
        return {c.path.name.removeprefix(JOB_PREFIX): c for c in cgroupfs.children(self.parent, JOB_PREFIX)}
