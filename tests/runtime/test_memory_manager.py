"""montage.runtime.memory_manager on fake cgroup trees and on this machine."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from montage.errors import ExitCode
from montage.runtime.memory_manager import (
    MemoryReadError,
    MemoryReading,
    can_admit,
    get_available_mb,
    read_memory,
)
from montage.settings import MemorySettings, Settings

from .conftest import HYBRID_MOUNTINFO, V1_MOUNTINFO, V2_MOUNTINFO, FakeRoot, mb

V1_UNLIMITED = "9223372036854771712"


def _settings(limit_mb: int | None) -> Settings:
    return Settings(memory=MemorySettings(limit_mb=limit_mb))


def _host_total_mb() -> float:
    return psutil.virtual_memory().total / (1024 * 1024)


# --- cgroup v2 ---------------------------------------------------------------------------------


def test_v2_limit_on_own_cgroup(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/app/worker\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/app/worker", limit=mb(1024), usage_mb=300)
    reading = read_memory(root=fake_root.root)
    assert reading == MemoryReading(
        limit_mb=1024.0, used_mb=300.0, available_mb=724.0, source="cgroup v2 /sys/fs/cgroup/app/worker/memory.max"
    )


def test_v2_nested_smallest_headroom_wins_at_an_ancestor(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/app/worker\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/app/worker", limit="max", usage_mb=100)
    fake_root.v2("/sys/fs/cgroup/app", limit=mb(2048), usage_mb=1500)
    fake_root.v2("/sys/fs/cgroup", limit=mb(8192), usage_mb=2000)  # the root has a limit too, larger
    reading = read_memory(root=fake_root.root)
    assert reading.limit_mb == 2048.0
    assert reading.used_mb == 1500.0
    assert reading.available_mb == 548.0
    assert reading.source == "cgroup v2 /sys/fs/cgroup/app/memory.max"


def test_v2_nested_child_limit_smaller_than_parent(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/a/b/c\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/a/b/c", limit=mb(512), usage_mb=100)
    fake_root.write("/sys/fs/cgroup/a/b", "cgroup.procs", "")  # no memory controller at this level
    fake_root.v2("/sys/fs/cgroup/a", limit=mb(4096), usage_mb=1000)
    reading = read_memory(root=fake_root.root)
    assert (reading.limit_mb, reading.available_mb) == (512.0, 412.0)
    assert reading.source.endswith("/sys/fs/cgroup/a/b/c/memory.max")


def test_v2_parent_nearly_full_binds_although_its_limit_is_larger(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/a/b\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/a/b", limit=mb(500), usage_mb=100)
    fake_root.v2("/sys/fs/cgroup/a", limit=mb(1000), usage_mb=950)
    assert get_available_mb(root=fake_root.root) == 50.0


def test_v2_inactive_file_is_subtracted_and_never_negative(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/job\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/job", limit=mb(1000), usage_mb=900, inactive_mb=600)
    reading = read_memory(root=fake_root.root)
    assert reading.used_mb == 300.0
    assert reading.available_mb == 700.0

    fake_root.v2("/sys/fs/cgroup/job", limit=mb(1000), usage_mb=100, inactive_mb=250)
    assert read_memory(root=fake_root.root).used_mb == 0.0


def test_v2_over_limit_reports_zero_available(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/job\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/job", limit=mb(100), usage_mb=150)
    assert get_available_mb(root=fake_root.root) == 0.0


def test_v2_unlimited_falls_back_to_host_and_says_so(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/app\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/app", limit="max", usage_mb=100)
    fake_root.v2("/sys/fs/cgroup", limit="max", usage_mb=100)
    reading = read_memory(root=fake_root.root)
    assert reading.source.startswith("host (psutil")
    assert "no memory limit in cgroup v2 /sys/fs/cgroup/app or its ancestors" in reading.source
    assert reading.limit_mb == pytest.approx(_host_total_mb())
    assert 0 < reading.available_mb <= reading.limit_mb


def test_v2_cgroup_namespace_root_and_escaped_mount_point(fake_root: FakeRoot) -> None:
    # Inside a container with a cgroup namespace: the process is at "/" of a mount whose
    # mount point has a space in it (mountinfo writes it as \040).
    fake_root.proc("0::/\n", "41 31 0:38 / /sys/fs/cgroup\\040x rw - cgroup2 cgroup2 rw\n")
    fake_root.v2("/sys/fs/cgroup x", limit=mb(256), usage_mb=56)
    reading = read_memory(root=fake_root.root)
    assert reading.available_mb == 200.0
    assert reading.source == "cgroup v2 /sys/fs/cgroup x/memory.max"


def test_v2_mount_exposes_only_the_containers_own_cgroup(fake_root: FakeRoot) -> None:
    # No cgroup namespace: /proc/self/cgroup names a host path the mount does not contain.
    fake_root.proc("0::/docker/abc\n", "41 31 0:38 /docker/xyz /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    fake_root.v2("/sys/fs/cgroup", limit=mb(300), usage_mb=100)
    assert get_available_mb(root=fake_root.root) == 200.0


def test_v2_path_outside_namespace_uses_the_mount(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/../../sibling\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup", limit=mb(300), usage_mb=0)
    assert get_available_mb(root=fake_root.root) == 300.0


def test_v2_prefers_the_mount_that_shows_our_cgroup(fake_root: FakeRoot) -> None:
    # The hierarchy is mounted twice: first a bind mount of another subtree, then the full tree.
    mountinfo = (
        "50 31 0:38 /other /mnt/other rw - cgroup2 cgroup2 rw\n41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    )
    fake_root.proc("0::/app\n", mountinfo)
    fake_root.v2("/mnt/other", limit=mb(100), usage_mb=0)
    fake_root.v2("/sys/fs/cgroup/app", limit=mb(600), usage_mb=100)
    reading = read_memory(root=fake_root.root)
    assert reading.source == "cgroup v2 /sys/fs/cgroup/app/memory.max"
    assert reading.available_mb == 500.0


# --- cgroup v1 and hybrid ----------------------------------------------------------------------


def test_v1_memory_controller_with_total_inactive_file(fake_root: FakeRoot) -> None:
    fake_root.proc("4:memory:/svc/job\n3:cpu,cpuacct:/svc\n1:name=systemd:/svc\n", V1_MOUNTINFO)
    fake_root.v1("/sys/fs/cgroup/memory/svc/job", limit=V1_UNLIMITED, usage_mb=400, inactive_mb=100)
    fake_root.v1("/sys/fs/cgroup/memory/svc", limit=mb(1536), usage_mb=800, inactive_mb=300)
    fake_root.v1("/sys/fs/cgroup/memory", limit=V1_UNLIMITED, usage_mb=5000)
    reading = read_memory(root=fake_root.root)
    assert (reading.limit_mb, reading.used_mb, reading.available_mb) == (1536.0, 500.0, 1036.0)
    assert reading.source == "cgroup v1 /sys/fs/cgroup/memory/svc/memory.limit_in_bytes"


def test_v1_unlimited_sentinel_falls_back_to_host(fake_root: FakeRoot) -> None:
    fake_root.proc("4:memory:/svc\n", V1_MOUNTINFO)
    fake_root.v1("/sys/fs/cgroup/memory/svc", limit=V1_UNLIMITED, usage_mb=10)
    reading = read_memory(root=fake_root.root)
    assert reading.source.startswith("host (psutil")
    assert "cgroup v1 /sys/fs/cgroup/memory/svc" in reading.source


def test_v1_stat_without_total_uses_inactive_file(fake_root: FakeRoot) -> None:
    fake_root.proc("4:memory:/svc\n", V1_MOUNTINFO)
    fake_root.v1("/sys/fs/cgroup/memory/svc", limit=mb(1000), usage_mb=500)
    fake_root.write("/sys/fs/cgroup/memory/svc", "memory.stat", f"cache 1\n\ninactive_file {mb(200)}\n")
    assert read_memory(root=fake_root.root).used_mb == 300.0


def test_hybrid_uses_the_v1_memory_controller(fake_root: FakeRoot) -> None:
    fake_root.proc("9:memory:/svc\n1:name=systemd:/svc\n0::/svc\n", HYBRID_MOUNTINFO)
    fake_root.v1("/sys/fs/cgroup/memory/svc", limit=mb(700), usage_mb=200)
    fake_root.write("/sys/fs/cgroup/unified/svc", "cgroup.procs", "1\n")  # unified tree has no memory files
    reading = read_memory(root=fake_root.root)
    assert reading.available_mb == 500.0
    assert reading.source.startswith("cgroup v1 ")


def test_hybrid_without_v1_memory_line_uses_unified(fake_root: FakeRoot) -> None:
    fake_root.proc("1:name=systemd:/svc\n0::/svc\n", HYBRID_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/unified/svc", limit=mb(900), usage_mb=100)
    reading = read_memory(root=fake_root.root)
    assert reading.available_mb == 800.0
    assert reading.source == "cgroup v2 /sys/fs/cgroup/unified/svc/memory.max"


# --- fallbacks without cgroup information ------------------------------------------------------


def test_no_proc_cgroup_falls_back_to_host(fake_root: FakeRoot) -> None:
    reading = read_memory(root=fake_root.root)
    assert reading.source == "host (psutil /proc/meminfo; /proc/self/cgroup not found)"


def test_no_cgroup_mount_falls_back_to_host(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/app\n", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    reading = read_memory(root=fake_root.root)
    assert "no cgroup memory mount for /proc/self/cgroup in /proc/self/mountinfo" in reading.source


# --- settings override -------------------------------------------------------------------------


def test_settings_override_replaces_the_detected_limit(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/app\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/app", limit=mb(4096), usage_mb=1000, inactive_mb=200)
    reading = read_memory(_settings(1024), root=fake_root.root)
    assert (reading.limit_mb, reading.used_mb, reading.available_mb) == (1024.0, 800.0, 224.0)
    assert reading.override_mb == 1024
    assert reading.source.startswith("settings.memory.limit_mb=1024 (detected: cgroup v2 /sys/fs/cgroup/app/")
    assert get_available_mb(_settings(1024), root=fake_root.root) == 224.0


def test_settings_without_override_keep_the_detected_limit(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/app\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/app", limit=mb(4096), usage_mb=1000)
    reading = read_memory(_settings(None), root=fake_root.root)
    assert reading.limit_mb == 4096.0
    assert reading.override_mb is None


# --- garbled and unreadable files --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "shown"),
    [
        ("memory.max", "lots\n", "'lots'"),
        ("memory.current", "-5\n", "'-5'"),
        ("memory.current", "\u00b2\n", "'\u00b2'"),
        ("memory.stat", "inactive_file many\n", "'inactive_file many'"),
    ],
)
def test_garbled_v2_value_names_file_and_value(fake_root: FakeRoot, name: str, content: str, shown: str) -> None:
    fake_root.proc("0::/app\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/app", limit=mb(100), usage_mb=10)
    fake_root.write("/sys/fs/cgroup/app", name, content)
    with pytest.raises(MemoryReadError) as caught:
        read_memory(root=fake_root.root)
    assert f"/sys/fs/cgroup/app/{name} contains {shown}" in str(caught.value)
    assert str(fake_root.root) not in str(caught.value)
    assert caught.value.exit_code == ExitCode.INCONCLUSIVE


def test_garbled_v1_limit_does_not_accept_max(fake_root: FakeRoot) -> None:
    fake_root.proc("4:memory:/svc\n", V1_MOUNTINFO)
    fake_root.v1("/sys/fs/cgroup/memory/svc", limit="max", usage_mb=10)
    with pytest.raises(MemoryReadError, match=r"memory.limit_in_bytes contains 'max'; expected a byte count\."):
        read_memory(root=fake_root.root)


def test_long_garbled_value_is_shortened(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/app\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/app", limit="x" * 200, usage_mb=10)
    with pytest.raises(MemoryReadError, match=r"'x{77}\.\.\.'"):
        read_memory(root=fake_root.root)


def test_stat_without_inactive_file(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/app\n", V2_MOUNTINFO)
    fake_root.v2("/sys/fs/cgroup/app", limit=mb(100), usage_mb=10)
    fake_root.write("/sys/fs/cgroup/app", "memory.stat", "anon 5\n")
    with pytest.raises(MemoryReadError, match=r"/sys/fs/cgroup/app/memory.stat has no inactive_file line"):
        read_memory(root=fake_root.root)


def test_limit_without_usage_file(fake_root: FakeRoot) -> None:
    fake_root.proc("0::/app\n", V2_MOUNTINFO)
    fake_root.write("/sys/fs/cgroup/app", "memory.max", mb(100))
    with pytest.raises(MemoryReadError, match=r"/sys/fs/cgroup/app/memory.current: the file does not exist"):
        read_memory(root=fake_root.root)


@pytest.mark.parametrize("line", ["garbage", "x::/app", "0::relative"])
def test_garbled_proc_cgroup_line(fake_root: FakeRoot, line: str) -> None:
    fake_root.proc(f"\n{line}\n", V2_MOUNTINFO)
    with pytest.raises(MemoryReadError, match=rf"/proc/self/cgroup contains '{line}'; expected lines"):
        read_memory(root=fake_root.root)


@pytest.mark.parametrize(
    ("line", "expected"),
    [("41 31 0:38 / /sys/fs/cgroup rw no separator", "'ID PARENT"), ("41 31 0:38 / /x rw - cgroup2", "FSTYPE, SOURCE")],
)
def test_garbled_mountinfo_line(fake_root: FakeRoot, line: str, expected: str) -> None:
    fake_root.proc("0::/\n", f"\n{line}\n")
    with pytest.raises(MemoryReadError, match=rf"/proc/self/mountinfo contains '{line}'; expected {expected}"):
        read_memory(root=fake_root.root)


def test_unreadable_directory_in_place_of_a_file(fake_root: FakeRoot) -> None:
    # A directory where the kernel would have a file: reading it fails with IsADirectoryError.
    fake_root.proc("0::/app\n", V2_MOUNTINFO)
    (fake_root.root / "sys/fs/cgroup/app/memory.max").mkdir(parents=True)
    with pytest.raises(MemoryReadError, match=r"cannot read /sys/fs/cgroup/app/memory.max: Is a directory\."):
        read_memory(root=fake_root.root)


# --- admission ---------------------------------------------------------------------------------

READING = MemoryReading(limit_mb=2048.0, used_mb=648.0, available_mb=1400.0, source="cgroup v2 /x/memory.max")


def test_can_admit_fits() -> None:
    ok, reason = can_admit(600, READING, reserve_mb=256)
    assert ok
    assert reason == (
        "admit: job needs 600 MB; 2048 MB limit minus 256 MB reserve minus 0 MB reserved by running jobs "
        "leaves 1792 MB (cgroup v2 /x/memory.max)"
    )


def test_can_admit_counts_the_reservations_of_running_jobs_not_the_working_set() -> None:
    # 2 x 600 MB reserved: 2048 - 256 - 1200 = 592 MB free, although 1400 MB are available right now.
    ok, reason = can_admit(600, READING, reserve_mb=256, reserved_mb=1200)
    assert not ok
    assert reason.startswith("refuse: job needs 600 MB; 2048 MB limit minus 256 MB reserve minus 1200 MB reserved")
    assert can_admit(592, READING, reserve_mb=256, reserved_mb=1200)[0]


def test_can_admit_exact_fit_and_negative_input() -> None:
    assert can_admit(1792, READING, reserve_mb=256)[0]
    assert not can_admit(1793, READING, reserve_mb=256)[0]
    with pytest.raises(Exception, match="must not be negative"):
        can_admit(-1, READING, reserve_mb=256)
    with pytest.raises(Exception, match="must not be negative"):
        can_admit(1, READING, reserve_mb=256, reserved_mb=-5)


# --- this machine ------------------------------------------------------------------------------


def test_reads_this_machine() -> None:
    reading = read_memory()
    assert reading.limit_mb > 0
    assert reading.used_mb >= 0
    assert 0 < reading.available_mb <= reading.limit_mb
    assert reading.source.split(" ")[0] in ("cgroup", "host")
    assert "/" in reading.source  # names the path it read
    assert get_available_mb() > 0
    print(reading)


def test_root_parameter_defaults_to_the_real_root() -> None:
    assert read_memory(root=Path("/")).source == read_memory().source
