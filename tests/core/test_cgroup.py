"""montage.core.cgroup on fake trees (the memory side is covered through tests/runtime) and this machine."""

from __future__ import annotations

from pathlib import Path

from montage.core import cgroup

V2_MOUNTINFO = "41 31 0:38 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"


def _tree(root: Path, quotas: dict[str, str]) -> None:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text("0::/a/b\n")
    (root / "proc/self/mountinfo").write_text(V2_MOUNTINFO)
    for rel, text in quotas.items():
        d = root / "sys/fs/cgroup" / rel
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(text)


def test_cpu_quota_is_the_smallest_up_the_tree(tmp_path: Path) -> None:
    _tree(tmp_path, {"a/b": "max 100000\n", "a": "150000 100000\n", "": "max 100000\n"})
    assert cgroup.read_cpu_quota(tmp_path) == (1.5, "cgroup v2 /sys/fs/cgroup/a/cpu.max")


def test_no_quota(tmp_path: Path) -> None:
    _tree(tmp_path, {"a/b": "max 100000\n"})
    assert cgroup.read_cpu_quota(tmp_path) is None
    assert cgroup.read_cpu_quota(tmp_path / "nowhere") is None


def test_memory_limit_or_why_not(tmp_path: Path) -> None:
    found = cgroup.read_memory_limit(tmp_path)
    assert isinstance(found, cgroup.NoLimit) and "not found" in found.reason
    here = cgroup.read_memory_limit()  # this machine: either a real limit or a reason
    assert isinstance(here, (cgroup.CgroupMemory, cgroup.NoLimit))
