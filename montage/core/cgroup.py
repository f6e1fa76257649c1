"""The process's own cgroup: its memory limit and working set, and its CPU quota.

Read from ``/proc/self/cgroup`` + ``/proc/self/mountinfo``, v2 (unified, ``memory.max`` /
``memory.current``) or v1 (``memory.limit_in_bytes`` / ``memory.usage_in_bytes``), walking from the
process's cgroup up through every visible ancestor: the binding level is the one with the least
headroom.  The working set is usage minus the inactive file cache (``inactive_file`` / v1
``total_inactive_file`` in ``memory.stat``), never negative, because the kernel reclaims that cache
before it OOM-kills.

Every path is relative to a ``root`` parameter so tests can build fake ``/proc`` and
``/sys/fs/cgroup`` trees.  Nothing runs at import time; stdlib only (the host fallback, which
needs psutil, is the caller's: see :mod:`montage.runtime.memory_manager`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from montage.errors import Inconclusive

# cgroup v1 reports "no limit" as PAGE_COUNTER_MAX * page size (9223372036854771712 with 4 KiB
# pages); anything this large is no real limit.
V1_UNLIMITED_FLOOR = 1 << 60


class CgroupReadError(Inconclusive):
    """A cgroup or proc file could not be read or holds a value that is not what the kernel writes."""


@dataclass(frozen=True)
class CgroupMemory:
    """The binding memory limit of this process's cgroup tree, in bytes."""

    limit_bytes: int
    used_bytes: int  # working set: usage minus inactive file cache
    source: str  # "cgroup v2 /sys/fs/cgroup/.../memory.max" or "cgroup v1 ..."


@dataclass(frozen=True)
class NoLimit:
    """No cgroup memory limit applies; ``reason`` says where we looked."""

    reason: str


@dataclass(frozen=True)
class _Mount:
    root: str  # the cgroup path mounted there
    mount_point: str
    fstype: str
    super_options: frozenset[str]


@dataclass(frozen=True)
class _Level:
    """A cgroup directory that has a memory limit."""

    version: str  # "cgroup v2" or "cgroup v1"
    limit_file: Path
    limit: int
    used: int


def _display(root: Path, path: Path) -> str:
    """The path as the process sees it (without the test root); every path here is built under root."""
    return "/" + str(path.relative_to(root))


def _read_text(path: Path, root: Path) -> str | None:
    """The file's text, None when it does not exist; other OS errors become CgroupReadError."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise CgroupReadError(
            f"cannot read {_display(root, path)}: {exc.strerror or exc}.",
            hint="Memory limits are read from the process's own cgroup; check the file's permissions.",
        ) from exc


def _require_text(path: Path, root: Path) -> str:
    text = _read_text(path, root)
    if text is None:
        raise CgroupReadError(
            f"cannot read {_display(root, path)}: the file does not exist, although the cgroup sets a memory limit."
        )
    return text


def _garbled(root: Path, path: Path, value: str, expected: str) -> CgroupReadError:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return CgroupReadError(f"{_display(root, path)} contains {shown!r}; expected {expected}.")


def _is_count(value: str) -> bool:
    """ASCII digits only (str.isdigit also accepts '²', which int() rejects)."""
    return value.isascii() and value.isdigit()


def _parse_bytes(text: str, path: Path, root: Path, *, allow_max: bool) -> int | None:
    """A byte count; None for "max" (v2 unlimited) when allowed."""
    value = text.strip()
    if allow_max and value == "max":
        return None
    if not _is_count(value):
        expected = "a byte count or 'max'" if allow_max else "a byte count"
        raise _garbled(root, path, value, expected)
    return int(value)


def _parse_proc_cgroup(text: str, path: Path, root: Path) -> tuple[str | None, str | None]:
    """(unified v2 path, v1 memory-controller path) of ``/proc/self/cgroup``."""
    unified: str | None = None
    v1_memory: str | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not _is_count(parts[0]) or not parts[2].startswith("/"):
            raise _garbled(root, path, line, "lines 'ID:CONTROLLERS:/PATH' such as '0::/' or '4:memory:/user'")
        hierarchy, controllers, cgroup_path = parts
        if hierarchy == "0" and controllers == "":
            unified = cgroup_path
        elif "memory" in controllers.split(","):
            v1_memory = cgroup_path
    return unified, v1_memory


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _parse_mountinfo(text: str, path: Path, root: Path) -> list[_Mount]:
    """The cgroup and cgroup2 mounts of ``/proc/self/mountinfo``."""
    mounts: list[_Mount] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        try:
            separator = fields.index("-", 6)
        except ValueError:
            raise _garbled(
                root, path, line, "'ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE OPTIONS'"
            ) from None
        if len(fields) < separator + 3:
            raise _garbled(root, path, line, "FSTYPE, SOURCE and SUPER-OPTIONS after the ' - ' separator")
        fstype = fields[separator + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mounts.append(
            _Mount(
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                fstype=fstype,
                super_options=frozenset(fields[separator + 3].split(",")),
            )
        )
    return mounts


def _exposes(mount: _Mount, cgroup_path: str) -> bool:
    """Whether the mount shows ``cgroup_path`` (its root is that path or an ancestor)."""
    mount_root = PurePosixPath(mount.root)
    path = PurePosixPath(cgroup_path)
    return path == mount_root or mount_root in path.parents


def _by_exposure(mounts: list[_Mount], cgroup_path: str) -> list[_Mount]:
    """Mounts showing ``cgroup_path`` first (a host can mount one hierarchy more than once)."""
    return sorted(mounts, key=lambda mount: not _exposes(mount, cgroup_path))


def _cgroup_dir(mount: _Mount, cgroup_path: str, root: Path) -> tuple[Path, Path]:
    """(the process's cgroup directory, the mount point) under ``root``."""
    top = root / mount.mount_point.lstrip("/")
    relative = PurePosixPath(cgroup_path).relative_to("/") if cgroup_path.startswith("/") else PurePosixPath(".")
    mount_root = PurePosixPath(mount.root)
    full = PurePosixPath("/") / relative
    if ".." in full.parts:  # outside our cgroup namespace: only the mount itself is visible
        return top, top
    try:
        inside = full.relative_to(mount_root)
    except ValueError:  # the mount exposes another subtree (e.g. a container's own cgroup)
        return top, top
    return top / str(inside), top


def _levels(leaf: Path, top: Path) -> list[Path]:
    """leaf, its parent, ... up to and including top (``_cgroup_dir`` always puts leaf under top)."""
    chain = [leaf, *leaf.parents]
    return chain[: chain.index(top) + 1]


def _inactive_file(stat_path: Path, root: Path, keys: tuple[str, ...]) -> int:
    text = _require_text(stat_path, root)
    values: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            values[parts[0]] = parts[1]
    for key in keys:
        if key in values:
            if not _is_count(values[key]):
                raise _garbled(root, stat_path, f"{key} {values[key]}", f"'{key} <bytes>'")
            return int(values[key])
    raise CgroupReadError(f"{_display(root, stat_path)} has no {' or '.join(keys)} line; expected one.")


def _walk(version: str, leaf: Path, top: Path, root: Path) -> tuple[list[_Level], str]:
    """Every level with a limit, and a description of where we looked."""
    stat_keys: tuple[str, ...]
    if version == "cgroup v2":
        limit_name, usage_name, stat_keys, allow_max = "memory.max", "memory.current", ("inactive_file",), True
    else:
        limit_name, usage_name = "memory.limit_in_bytes", "memory.usage_in_bytes"
        stat_keys, allow_max = ("total_inactive_file", "inactive_file"), False
    levels: list[_Level] = []
    for directory in _levels(leaf, top):
        limit_file = directory / limit_name
        text = _read_text(limit_file, root)
        if text is None:
            continue
        limit = _parse_bytes(text, limit_file, root, allow_max=allow_max)
        if limit is None or limit >= V1_UNLIMITED_FLOOR:
            continue
        usage_file = directory / usage_name
        usage = _parse_bytes(_require_text(usage_file, root), usage_file, root, allow_max=False)
        assert usage is not None  # allow_max=False never returns None
        inactive = _inactive_file(directory / "memory.stat", root, stat_keys)
        levels.append(_Level(version, limit_file, limit, max(0, usage - inactive)))
    return levels, f"{version} {_display(root, leaf)}"


def _memory_hierarchy(root: Path) -> tuple[str, Path, Path] | str:
    """(version, the process's cgroup directory, the mount point) of the memory controller, or why none."""
    cgroup_file = root / "proc/self/cgroup"
    text = _read_text(cgroup_file, root)
    if text is None:
        return f"{_display(root, cgroup_file)} not found"
    unified, v1_memory = _parse_proc_cgroup(text, cgroup_file, root)
    mountinfo_file = root / "proc/self/mountinfo"
    mountinfo = _read_text(mountinfo_file, root)
    mounts = [] if mountinfo is None else _parse_mountinfo(mountinfo, mountinfo_file, root)

    # The memory controller is bound to one hierarchy: v1 when /proc/self/cgroup names it (hybrid
    # hosts list the unified "0::" line as well, without the memory controller), else v2.
    candidates: list[tuple[str, _Mount, str]] = []
    if v1_memory is not None:
        v1_mounts = [m for m in mounts if m.fstype == "cgroup" and "memory" in m.super_options]
        candidates += [("cgroup v1", m, v1_memory) for m in _by_exposure(v1_mounts, v1_memory)]
    if unified is not None:
        v2_mounts = [m for m in mounts if m.fstype == "cgroup2"]
        candidates += [("cgroup v2", m, unified) for m in _by_exposure(v2_mounts, unified)]
    if not candidates:
        return f"no cgroup memory mount for {_display(root, cgroup_file)} in {_display(root, mountinfo_file)}"
    version, mount, cgroup_path = candidates[0]
    leaf, top = _cgroup_dir(mount, cgroup_path, root)
    return version, leaf, top


def own_memory_cgroup(root: Path = Path("/")) -> tuple[Literal[1, 2], Path] | str:
    """(cgroup version 1 or 2, this process's memory cgroup directory), or why there is none."""
    found = _memory_hierarchy(root)
    if isinstance(found, str):
        return found
    version, leaf, _top = found
    return (1 if version == "cgroup v1" else 2), leaf


def read_memory_limit(root: Path = Path("/")) -> CgroupMemory | NoLimit:
    """The binding cgroup memory limit (smallest headroom up the tree), or :class:`NoLimit`.

    Raises :class:`CgroupReadError` (exit code INCONCLUSIVE) for unreadable or garbled files.
    """
    found = _memory_hierarchy(root)
    if isinstance(found, str):
        return NoLimit(found)
    version, leaf, top = found
    levels, looked = _walk(version, leaf, top, root)
    if not levels:
        return NoLimit(f"no memory limit in {looked} or its ancestors")
    binding = min(levels, key=lambda level: level.limit - level.used)
    return CgroupMemory(binding.limit, binding.used, f"{binding.version} {_display(root, binding.limit_file)}")


def read_cpu_quota(root: Path = Path("/")) -> tuple[float, str] | None:
    """CPUs this process's cgroup v2 tree allows (the smallest ``cpu.max`` quota/period up the tree)
    and the file that sets it; None when no quota is set or the host has no unified hierarchy."""
    cgroup_file = root / "proc/self/cgroup"
    text = _read_text(cgroup_file, root)
    mountinfo = _read_text(root / "proc/self/mountinfo", root)
    if text is None or mountinfo is None:
        return None
    unified, _ = _parse_proc_cgroup(text, cgroup_file, root)
    mounts = [m for m in _parse_mountinfo(mountinfo, root / "proc/self/mountinfo", root) if m.fstype == "cgroup2"]
    if unified is None or not mounts:
        return None
    leaf, top = _cgroup_dir(_by_exposure(mounts, unified)[0], unified, root)
    best: tuple[float, str] | None = None
    for directory in _levels(leaf, top):
        raw = _read_text(directory / "cpu.max", root)
        parts = raw.split() if raw else []
        if len(parts) != 2 or parts[0] == "max" or not (_is_count(parts[0]) and _is_count(parts[1])):
            continue
        cpus = int(parts[0]) / max(1, int(parts[1]))
        if best is None or cpus < best[0]:
            best = (cpus, f"cgroup v2 {_display(root, directory / 'cpu.max')}")
    return best


def usable_cpus(root: Path = Path("/")) -> tuple[float, str]:
    """CPUs this process may use and where that came from: the cgroup v2 quota, else its CPU affinity."""
    quota = read_cpu_quota(root)
    if quota is not None:
        return quota
    return float(len(os.sched_getaffinity(0))), "sched_getaffinity"
