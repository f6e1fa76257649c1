"""Per-job memory cgroups: fake v1/v2 trees for the file formats, the real v1 tree for OOM isolation."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from montage.core import cgroupfs
from montage.core.cgroupfs import Cgroup
from montage.db import jobs
from montage.db.database import Database, make_engine
from montage.runtime import admission
from montage.runtime.admission import Admission
from montage.runtime.jobcgroup import JOB_PREFIX, JobCgroups, oom_message, own_memory_cgroup
from montage.settings import load_settings
from montage.workers.executor import JobSpec
from montage.workers.worker import MEMORY_NAME, Worker, WorkerConfig

from .conftest import V1_MOUNTINFO, V2_MOUNTINFO, FakeRoot

MIB = 1024 * 1024


def test_v2_child_enables_the_memory_controller_limits_and_turns_swap_off(tmp_path: Path) -> None:
    fake = FakeRoot(tmp_path)
    fake.proc("0::/svc dir/ünï\n", V2_MOUNTINFO)
    parent_dir = fake.write("/sys/fs/cgroup/svc dir/ünï", "cgroup.subtree_control", "cpu\n").parent
    parent, where = own_memory_cgroup(tmp_path)
    assert parent == Cgroup(parent_dir, 2), where
    child = cgroupfs.create_child(parent, "montage-job-a")
    assert (parent_dir / "cgroup.subtree_control").read_text() == "+memory"
    (child.path / "memory.swap.max").write_text("max\n")
    assert cgroupfs.set_memory_limit(child, 300 * MIB) == []
    assert (child.path / "memory.max").read_text() == str(300 * MIB)
    assert (child.path / "memory.swap.max").read_text() == "0"
    (child.path / "memory.peak").write_text(f"{310 * MIB}\n")
    (child.path / "memory.current").write_text(f"{10 * MIB}\n")
    (child.path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    counters = cgroupfs.counters(child)
    assert (counters.peak_bytes, counters.oom_kills, counters.limit_bytes) == (310 * MIB, 1, 300 * MIB)
    assert counters.sources["oom_kills"].endswith("montage-job-a/memory.events")
    assert oom_message(counters) == "out of memory (peak 310 MB, limit 300 MB)"


def test_v1_counters_and_swap_accounting_absent(tmp_path: Path) -> None:
    fake = FakeRoot(tmp_path)
    fake.proc("4:memory:/svc\n0::/\n", V1_MOUNTINFO)
    fake.write("/sys/fs/cgroup/memory/svc", "memory.limit_in_bytes", "9223372036854771712\n")
    parent, _ = own_memory_cgroup(tmp_path)
    assert parent is not None and parent.version == 1
    child = cgroupfs.create_child(parent, "montage-job-b")
    (child.path / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    notes = cgroupfs.set_memory_limit(child, 200 * MIB)
    assert notes and "memory.memsw.limit_in_bytes absent" in notes[0]
    (child.path / "memory.max_usage_in_bytes").write_text(f"{200 * MIB}\n")
    (child.path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (child.path / "memory.failcnt").write_text("57\n")
    counters = cgroupfs.counters(child)
    assert (counters.limit_bytes, counters.peak_bytes, counters.oom_kills, counters.failcnt) == (
        200 * MIB, 200 * MIB, 2, 57,
    )  # fmt: skip


def test_unlimited_and_missing_files_give_no_figures_not_errors(tmp_path: Path) -> None:
    cg = Cgroup(tmp_path, 1)
    (tmp_path / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\n")  # kernels before 4.13: no oom_kill line
    counters = cgroupfs.counters(cg)
    assert counters.limit_bytes is None and counters.oom_kills is None and counters.peak_bytes is None


def test_no_cgroup_mount_says_why(tmp_path: Path) -> None:
    FakeRoot(tmp_path).proc("0::/\n", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    found = JobCgroups.detect(tmp_path)
    assert not found.available and "no cgroup memory mount" in found.reason
    assert found.create("x", 100 * MIB) is None


def test_invalid_child_names_are_refused(tmp_path: Path) -> None:
    for name in ("", "a/b", ".."):
        with pytest.raises(cgroupfs.CgroupError, match="invalid cgroup name"):
            cgroupfs.create_child(Cgroup(tmp_path, 2), name)


# --- the real cgroup tree (root with a writable memory controller, as on CI here) -----------------

REAL = JobCgroups.detect()
real_only = pytest.mark.skipif(not REAL.available, reason=f"no writable memory cgroup: {REAL.reason}")

HOG = "import sys, time; chunks = [bytearray({mb} * 1024 * 1024)]; time.sleep(0.2); print('{{}}')"


class PythonExecutor:
    """Allocates ``duration_s`` x 10 MB, then writes a tiny output: a renderer with a known memory use."""

    name = "python-hog"

    def argv(self, spec: JobSpec) -> list[str]:
        mb = int(spec.duration_s * 10)
        script = HOG.format(mb=mb) + f"; open({str(spec.output_tmp)!r}, 'wb').write(b'x' * 10)"
        return [sys.executable, "-c", script]

    def collect(self, spec: JobSpec, stdout: str) -> None:
        spec.plan_path.write_text(json.dumps({"hog": True}))


@real_only
@pytest.mark.anyio
async def test_job_over_its_limit_fails_alone_with_an_oom_message(tmp_path: Path, db_url: str) -> None:
    db = Database(make_engine(db_url))
    try:
        async with db.begin() as session:
            hog = (await jobs.create_job(session, input_path="x", uploaded=False, duration_s=40, aspect="16:9")).id
            fine = (await jobs.create_job(session, input_path="x", uploaded=False, duration_s=2, aspect="16:9")).id
        config = WorkerConfig(worker_id="t", data_dir=tmp_path / "data", lease_s=30, heartbeat_s=0.3, poll_s=0.1,
                              job_timeout_s=120, drain_grace_s=5, max_attempts=1, retention_s=3600,
                              job_memory_limit_mb=150)  # fmt: skip
        roomy = load_settings(overrides={"memory": {"limit_mb": 4096}}, environ={"MONTAGE_ENV_FILE": "/nonexistent"})
        worker = Worker(db, PythonExecutor(), config, Admission(roomy.settings, machine="m1"))  # admission on
        assert worker.cgroups.available
        assert await worker.run(once=True) == 2
        async with db.session() as session:
            bad, good = await jobs.get_job(session, hog), await jobs.get_job(session, fine)
        assert bad is not None and good is not None
        assert bad.state == "failed" and bad.error is not None
        assert bad.error.startswith("out of memory (peak ") and "limit 150 MB" in bad.error, bad.error
        assert "137" not in bad.error
        assert good.state == "succeeded", good.error
        memory = json.loads((tmp_path / "data/results" / hog / MEMORY_NAME).read_text())
        assert memory["oom_kills"] >= 1 and memory["limit_bytes"] == 150 * MIB
        ok = json.loads((tmp_path / "data/results" / fine / MEMORY_NAME).read_text())
        assert ok["oom_kills"] == 0 and 15 * MIB < ok["peak_bytes"] < 150 * MIB
        async with db.session() as session:
            admitted, ooms = await admission.totals(session)  # what /metrics reports
            peaks = (await session.scalars(admission.select(admission.MemoryPeak))).all()
        assert [(p.job_id, p.peak_mb) for p in peaks] == [(fine, math.ceil(ok["peak_bytes"] / MIB))]
        assert (ooms, admitted) == (1, 2)
        left = {c.path.name for c in worker.cgroups.leftovers()}
        assert not left & {JOB_PREFIX + hog, JOB_PREFIX + fine}
    finally:
        await db.dispose()


@real_only
def test_remove_kills_what_is_left_and_leaves_no_montage_entries() -> None:
    import subprocess
    import threading

    assert REAL.parent is not None
    job = REAL.create("leftover-test", 64 * MIB)
    assert job is not None
    proc = subprocess.Popen(["sleep", "60"], preexec_fn=job.preexec)
    waiter = threading.Thread(target=proc.wait)  # as the worker does: its own child is collected by its owner
    waiter.start()
    try:
        assert cgroupfs.pids(job.cgroup) == [proc.pid]
    finally:
        assert job.close() is None  # killed first, then removed once its owner collected it
        waiter.join(timeout=30)
    assert proc.returncode == -9
    assert not job.cgroup.path.exists()
    assert not (REAL.parent.path / (JOB_PREFIX + "leftover-test")).exists()


@real_only
@pytest.mark.anyio
async def test_maintenance_removes_only_old_empty_cgroups_of_finished_jobs(tmp_path: Path, db_url: str) -> None:
    """A worker SIGKILLed mid-render never closes its job's cgroup; the next maintenance of a worker
    under the same parent removes it once the job is finished in its database.  Kept: a running or
    queued job's cgroup (a sibling may be about to start its renderer in it), one whose job id this
    database does not know (another deployment's, e.g. a canary's other side), one younger than a lease,
    and one that holds a process (the sweep kills nothing)."""
    import subprocess
    import threading
    import time

    db = Database(make_engine(db_url))
    made: dict[str, Any] = {}
    sleeper = None

    async def new_job() -> str:
        async with db.begin() as session:
            return (await jobs.create_job(session, input_path="x", uploaded=False, duration_s=2, aspect="16:9")).id

    async def finished_job() -> str:
        job_id = await new_job()
        lease = await jobs.claim(db, job_id, "dead-worker", 60)
        assert lease is not None
        await jobs.finish(db, lease, succeeded=False, error="worker SIGKILLed")
        return job_id

    try:
        ids = {"finished": await finished_job(), "busy": await finished_job(), "queued": await new_job(),
               "running": await new_job(), "unknown": f"another-deployment-{tmp_path.name}"}  # fmt: skip
        assert await jobs.claim(db, ids["running"], "other-worker", 60) is not None
        for what, job_id in ids.items():
            made[what] = REAL.create(job_id, 64 * MIB)
        assert all(made.values())
        sleeper = subprocess.Popen(["sleep", "60"], preexec_fn=made["busy"].preexec)  # a process is in it
        threading.Thread(target=sleeper.wait, daemon=True).start()
        config = WorkerConfig(worker_id="sweeper", data_dir=tmp_path / "data", lease_s=1.0, heartbeat_s=0.3,
                              poll_s=0.1, job_timeout_s=60, drain_grace_s=5, max_attempts=1, retention_s=3600,
                              job_memory_limit_mb=150)  # fmt: skip
        worker = Worker(db, PythonExecutor(), config)
        await worker.maintenance(force=True)  # every cgroup is younger than the 1 s lease: all kept
        assert all(cg.cgroup.path.is_dir() for cg in made.values())
        time.sleep(1.2)
        await worker.maintenance(force=True)
        kept = {what for what, cg in made.items() if cg.cgroup.path.is_dir()}
        assert kept == {"busy", "queued", "running", "unknown"}, kept
        assert sleeper.poll() is None  # not killed
    finally:
        for cg in made.values():
            if cg is not None:
                assert cg.close() is None
        await db.dispose()
    assert sleeper is not None and sleeper.wait(timeout=30) == -9


@real_only
@pytest.mark.anyio
async def test_a_failing_sweep_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The database unusable during the sweep: it is logged and skipped (the worker loop must not die of it)."""
    orphan = REAL.create(f"sweep-error-{tmp_path.name}", 64 * MIB)
    assert orphan is not None
    try:
        config = WorkerConfig(worker_id="sweeper", data_dir=tmp_path / "data", lease_s=1.0, heartbeat_s=0.3,
                              poll_s=0.1, job_timeout_s=60, drain_grace_s=5, max_attempts=1, retention_s=3600,
                              job_memory_limit_mb=150)  # fmt: skip
        broken = Database(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'x' / 'db.sqlite'}"))
        worker = Worker(broken, PythonExecutor(), config)
        await worker.sweep_cgroups()
        assert "job cgroup sweep skipped" in caplog.text
        assert orphan.cgroup.path.is_dir()
        await broken.dispose()
    finally:
        assert orphan.close() is None


# --- cgroupfs on fake trees: peak reset, kill, remove, children --------------------------------------


def test_reset_peak_writes_v1_counter_and_refuses_v2(tmp_path: Path) -> None:
    v1 = Cgroup(tmp_path / "v1", 1)
    v1.path.mkdir()
    (v1.path / "memory.max_usage_in_bytes").write_text(f"{300 * MIB}\n")
    assert cgroupfs.reset_peak(v1) is True
    assert (v1.path / "memory.max_usage_in_bytes").read_text() == "0"
    assert cgroupfs.reset_peak(Cgroup(tmp_path / "v2", 2)) is False  # v2 has no writable peak
    assert cgroupfs.reset_peak(Cgroup(tmp_path / "gone", 1)) is False  # an unwritable counter: no reset, no crash


def test_kill_all_signals_every_member_or_uses_cgroup_kill(tmp_path: Path) -> None:
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        v1 = Cgroup(tmp_path / "v1", 1)
        v1.path.mkdir()
        (v1.path / "cgroup.procs").write_text(f"{child.pid}\n")
        assert cgroupfs.kill_all(v1) == 1
        assert child.wait(timeout=30) == -9  # SIGKILLed for real
        v2 = Cgroup(tmp_path / "v2", 2)
        v2.path.mkdir()
        (v2.path / "cgroup.procs").write_text("4242\n")
        (v2.path / "cgroup.kill").write_text("0")
        assert cgroupfs.kill_all(v2) == 1 and (v2.path / "cgroup.kill").read_text() == "1"  # the kernel kills
    finally:
        child.kill()
        child.wait(timeout=30)


def test_remove_takes_children_first_and_says_why_a_busy_one_stays(tmp_path: Path) -> None:
    tree = Cgroup(tmp_path / "job", 1)
    (tree.path / "a" / "deeper").mkdir(parents=True)
    (tree.path / "b").mkdir()
    assert cgroupfs.remove(tree, attempts=2, delay_s=0) is None
    assert not tree.path.exists()
    busy = Cgroup(tmp_path / "busy", 1)
    (busy.path / "inner").mkdir(parents=True)
    (busy.path / "inner" / "stray").write_text("x")  # rmdir keeps failing with ENOTEMPTY, like a busy cgroup
    why = cgroupfs.remove(busy, attempts=2, delay_s=0)
    assert why is not None and "busy: still busy after 2 attempts" in why, why  # the cgroup asked for
    assert cgroupfs.remove(Cgroup(tmp_path / "never-made", 1)) is None  # already gone is gone


def test_children_lists_only_the_prefix_in_order(tmp_path: Path) -> None:
    parent = Cgroup(tmp_path, 2)
    for name in ("montage-job-b", "montage-job-a", "other", "montage-job-c.txt"):
        (tmp_path / name).mkdir() if not name.endswith(".txt") else (tmp_path / name).write_text("")
    assert [c.path.name for c in cgroupfs.children(parent, "montage-job-")] == ["montage-job-a", "montage-job-b"]
    assert all(c.version == 2 for c in cgroupfs.children(parent, "montage-job-"))
    assert cgroupfs.children(Cgroup(tmp_path / "missing", 2), "x") == []
