"""Memory admission (montage/runtime/admission.py) against a real migrated SQLite database and real workers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from montage.db import jobs
from montage.db.database import Database, make_engine
from montage.db.models import Job
from montage.runtime import admission
from montage.runtime.admission import Admission, Waiting
from montage.runtime.memory_manager import MemoryReadError
from montage.settings import Settings, load_settings
from tests.runtime.conftest import V2_MOUNTINFO, FakeRoot
from tests.service.conftest import clip, make_clip  # noqa: F401 - fixtures

MIB = 1024 * 1024


def memory_settings(tmp_path: Path, **memory: Any) -> Settings:
    """Settings with a memory override (``limit_mb`` replaces the detected limit) and nothing from the environment."""
    overrides = {"data_dir": str(tmp_path / "data"), "memory": memory}
    return load_settings(
        overrides=overrides, environ={"USE_SETTINGS_V2": "true", "MONTAGE_ENV_FILE": "/nonexistent"}
    ).settings


async def submit(db: Database, n: int, estimate_mb: int | None = None) -> list[str]:
    ids = []
    for _ in range(n):
        async with db.begin() as session:
            job = await jobs.create_job(session, input_path="x", uploaded=False, duration_s=3, aspect="16:9",
                                        estimate_mb=estimate_mb)  # fmt: skip
            ids.append(job.id)
        await asyncio.sleep(0.01)  # distinct created_at: first come, first served is by submission time
    return ids


async def job(db: Database, job_id: str) -> Job:
    async with db.session() as session:
        found = await jobs.get_job(session, job_id)
    assert found is not None
    return found


def test_classes() -> None:
    assert admission.pixels_class(640 * 360) == 1
    assert admission.pixels_class(1280 * 720) == 4
    assert admission.pixels_class(1920 * 1080) == 9
    assert admission.pixels_class(None) == admission.pixels_class(0) == 0
    assert admission.duration_class(1) == admission.duration_class(30) == 1
    assert admission.duration_class(30.5) == 2


@pytest.mark.anyio
async def test_estimate_is_the_default_until_a_peak_of_the_same_class_is_measured(tmp_path: Path, db: Database) -> None:
    settings = memory_settings(tmp_path, limit_mb=4096)
    adm = Admission(settings, machine="m1")
    async with db.session() as session:
        assert await admission.estimate_mb(session, 1280 * 720, 20, 600) == 600
    async with db.begin() as session:
        done = await jobs.create_job(session, input_path="x", uploaded=False, duration_s=20, aspect="16:9",
                                     input_pixels=1280 * 720)  # fmt: skip
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"segments": [{}, {}, {}]}))
    await adm.record_peak(db, done.id, 300 * MIB, plan)
    async with db.session() as session:
        assert await admission.estimate_mb(session, 1280 * 720, 25, 600) == 360  # 300 MB x 1.2
        assert await admission.estimate_mb(session, 1920 * 1080, 20, 600) == 600  # another resolution class
        assert await admission.estimate_mb(session, 1280 * 720, 45, 600) == 600  # another duration class
        peak = (await session.scalars(admission.select(admission.MemoryPeak))).one()
    assert (peak.segments, peak.peak_mb, peak.machine, peak.pixels_class) == (3, 300, "m1", 4)


@pytest.mark.anyio
async def test_three_workers_on_one_machine_cannot_over_admit(tmp_path: Path, db_url: str) -> None:
    """1500 MB limit - 256 reserve = 1244 MB: two 600 MB jobs fit, the third waits (FCFS, no attempt used)."""
    settings = memory_settings(tmp_path, limit_mb=1500, reserve_mb=256, job_estimate_mb=600)
    dbs = [Database(make_engine(db_url)) for _ in range(3)]  # one connection pool per worker, as separate processes
    try:
        ids = await submit(dbs[0], 4)
        results = await asyncio.gather(
            *(Admission(settings, machine="m1").claim(d, f"w{i}", 30) for i, d in enumerate(dbs))
        )
        leases = [r for r in results if isinstance(r, jobs.Lease)]
        waits = [r for r in results if isinstance(r, Waiting)]
        assert len(leases) == 2 and len(waits) == 1, results
        assert {lease.job_id for lease in leases} == set(ids[:2])
        third = await job(dbs[0], ids[2])
        assert third.state == "queued" and third.attempts == 0
        assert third.status_text == "waiting for memory: needs 600 MB, 44 MB free"
        assert waits[0].running_here == 2
        async with dbs[0].session() as session:
            assert await admission.reserved_on(session, "m1") == 1200
            assert await admission.reserved_on(session, "m2") == 0
        # Another machine has its own budget: the head of the queue fits there.
        other = await Admission(settings, machine="m2").claim(dbs[1], "w-other", 30)
        assert isinstance(other, jobs.Lease) and other.job_id == ids[2]
        assert (await job(dbs[0], ids[2])).status_text is None  # running now: no longer waiting
        # One job on m1 finishes: the next one (ids[3]) is admitted there.
        assert await jobs.finish(dbs[0], leases[0], succeeded=True)
        nxt = await Admission(settings, machine="m1").claim(dbs[2], "w2", 30)
        assert isinstance(nxt, jobs.Lease) and nxt.job_id == ids[3] and nxt.attempt == 1
        assert (await job(dbs[0], ids[3])).status_text is None
    finally:
        for d in dbs:
            await d.dispose()


async def racing_claims(dbs: list[Database], settings: Settings, rounds: int = 5) -> list[int]:
    """Rounds of one claim per connection pool at once (budget: two 600 MB jobs); MB reserved after each."""
    await submit(dbs[0], len(dbs) * rounds)
    adm = Admission(settings, machine="m1")
    reserved = []
    for r in range(rounds):
        got = await asyncio.gather(*(adm.claim(d, f"w{i}", 30) for i, d in enumerate(dbs)))
        async with dbs[0].session() as session:
            reserved.append(await admission.reserved_on(session, "m1"))
        for lease in [g for g in got if isinstance(g, jobs.Lease)][: r % 2 + 1]:  # free one or two slots
            await jobs.finish(dbs[0], lease, succeeded=True)
    return reserved


@pytest.mark.anyio
async def test_racing_claims_never_reserve_more_than_the_budget(tmp_path: Path, db_url: str) -> None:
    settings = memory_settings(tmp_path, limit_mb=1500, reserve_mb=256, job_estimate_mb=600)
    dbs = [Database(make_engine(db_url)) for _ in range(4)]
    try:
        reserved = await racing_claims(dbs, settings)
    finally:
        for d in dbs:
            await d.dispose()
    assert max(reserved) == 1200 and all(r <= 1244 for r in reserved), reserved


@pytest.mark.anyio
async def test_sequential_claims_count_the_running_reservations(tmp_path: Path, db: Database) -> None:
    """One worker claiming in turn: the third 600 MB job does not fit beside two running ones."""
    settings = memory_settings(tmp_path, limit_mb=1500, reserve_mb=256, job_estimate_mb=600)
    await submit(db, 3)
    adm = Admission(settings, machine="m1")
    got = [await adm.claim(db, f"w{i}", 30) for i in range(3)]
    assert [type(g).__name__ for g in got] == ["Lease", "Lease", "Waiting"]


@pytest.mark.anyio
async def test_a_job_that_fits_nowhere_here_is_reported_and_once_mode_stops(tmp_path: Path, db: Database) -> None:
    from montage.workers.worker import Worker, WorkerConfig

    settings = memory_settings(tmp_path, limit_mb=500, reserve_mb=256, job_estimate_mb=600)
    (job_id,) = await submit(db, 1)
    config = WorkerConfig(worker_id="t", data_dir=tmp_path / "data", lease_s=30, heartbeat_s=0.3, poll_s=0.05,
                          job_timeout_s=60, drain_grace_s=1, max_attempts=1, retention_s=3600)  # fmt: skip
    worker = Worker(db, _NeverRun(), config, Admission(settings, machine="m1"))
    assert await worker.run(once=True) == 0
    waiting = await job(db, job_id)
    assert waiting.state == "queued" and waiting.attempts == 0
    assert waiting.status_text == "waiting for memory: needs 600 MB, 244 MB free"
    async with db.session() as session:
        assert await admission.largest_live_budget(session) is None  # the worker unregistered when it stopped


class _NeverRun:
    name = "never"

    def argv(self, spec: Any) -> list[str]:
        raise AssertionError("admission let a job in that does not fit")

    def collect(self, spec: Any, stdout: str) -> None:
        raise AssertionError("unreachable")


@pytest.mark.anyio
async def test_largest_live_budget_and_the_refusal_message(tmp_path: Path, db: Database) -> None:
    small = Admission(memory_settings(tmp_path, limit_mb=700, reserve_mb=256), machine="m1")
    big = Admission(memory_settings(tmp_path, limit_mb=900, reserve_mb=256), machine="m2")
    assert await small.claim(db, "small", 30) is None and await big.claim(db, "big", 30) is None  # registered
    async with db.session() as session:
        largest = await admission.largest_live_budget(session)
    assert largest == (644, "big")
    message = admission.too_large(700, largest)
    assert message is not None and "700 MB" in message and "644 MB" in message
    assert admission.too_large(644, largest) is None
    assert admission.too_large(10_000, None) is None  # no live worker: nothing to compare with


# --- three real `montage worker` processes ------------------------------------------------------


@pytest.mark.slow
def test_three_worker_processes_admit_two_and_the_third_runs_when_one_finishes(
    tmp_path: Path,
    db_url: str,
    clip: Path,  # noqa: F811
) -> None:
    from tests.service.conftest import service_env

    env = service_env(tmp_path, db_url, executor_realtime="true")
    env.update({"MONTAGE_MEMORY__LIMIT_MB": "1500", "MONTAGE_MEMORY__RESERVE_MB": "256", "USE_SETTINGS_V2": "true"})
    (tmp_path / "media").mkdir(exist_ok=True)

    async def make() -> list[str]:
        d = Database(make_engine(db_url))
        try:
            ids = []
            for _ in range(3):
                async with d.begin() as session:
                    created = await jobs.create_job(session, input_path=str(clip), uploaded=False, duration_s=4,
                                                    aspect="16:9")  # fmt: skip
                    ids.append(created.id)
                await asyncio.sleep(0.01)
            return ids
        finally:
            await d.dispose()

    async def states(ids: list[str]) -> list[tuple[str, int, str | None]]:
        d = Database(make_engine(db_url))
        try:
            return [(j.state, j.attempts, j.status_text) for j in [await job(d, i) for i in ids]]
        finally:
            await d.dispose()

    ids = asyncio.run(make())
    log = (tmp_path / "workers.log").open("ab")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "montage", "worker", "--once", "--id", f"p{i}"], env=env, stdout=log, stderr=log
        )  # fmt: skip
        for i in range(3)
    ]
    seen: list[list[tuple[str, int, str | None]]] = []
    try:
        deadline = time.monotonic() + 240
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            seen.append(asyncio.run(states(ids)))
            time.sleep(0.3)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        log.close()
    final = asyncio.run(states(ids))
    assert [s for s, _, _ in final] == ["succeeded"] * 3, (final, (tmp_path / "workers.log").read_text()[-3000:])
    assert [a for _, a, _ in final] == [1, 1, 1]  # waiting used no attempt
    assert max(sum(1 for s, _, _ in snap if s == "running") for snap in seen) == 2
    waited = [t for snap in seen for s, _, t in snap if s == "queued" and t]
    assert waited and waited[0] == "waiting for memory: needs 600 MB, 44 MB free", seen[:5]


@pytest.mark.anyio
async def test_unreadable_cgroup_files_stop_claims_without_a_crash(
    tmp_path: Path, db: Database, fake_root: FakeRoot
) -> None:
    from montage.workers.worker import Worker, WorkerConfig

    fake_root.proc("0::/app\n", V2_MOUNTINFO)
    fake_root.write("/sys/fs/cgroup/app", "memory.max", "lots\n")
    (job_id,) = await submit(db, 1)
    config = WorkerConfig(worker_id="t", data_dir=tmp_path / "data", lease_s=30, heartbeat_s=0.3, poll_s=0.05,
                          job_timeout_s=60, drain_grace_s=1, max_attempts=1, retention_s=3600)  # fmt: skip
    adm = Admission(memory_settings(tmp_path), machine="m1", root=fake_root.root)
    with pytest.raises(MemoryReadError, match="memory.max"):
        adm.reading()
    assert await Worker(db, _NeverRun(), config, adm).run(once=True) == 0
    left = await job(db, job_id)
    assert (left.state, left.attempts) == ("queued", 0)


# --- the one-statement overview that /v1/admin/stats and /metrics read -------------------------


async def overview_scene(db: Database, tmp_path: Path) -> None:
    """Jobs in every interesting state and budgets on two machines, one of them stale."""
    from datetime import timedelta

    from montage.db.models import WorkerBudget, utcnow

    a = Admission(memory_settings(tmp_path, limit_mb=2000, reserve_mb=256, job_estimate_mb=600), machine="m1")
    b = Admission(memory_settings(tmp_path, limit_mb=600, reserve_mb=100, job_estimate_mb=600), machine="m 2 ü")
    await submit(db, 5)
    leases = [await a.claim(db, "w1", 30), await a.claim(db, "w2", 30), await b.claim(db, "w3", 30)]
    assert all(isinstance(x, jobs.Lease) for x in leases[:2]), leases
    assert isinstance(leases[2], Waiting)  # 600 MB does not fit in 600 - 100 MB: the head job waits, said so
    async with db.begin() as session:
        first = await session.get(Job, leases[0].job_id)  # type: ignore[union-attr]
        assert first is not None
        first.lease_expires_at = utcnow() - timedelta(seconds=5)  # running, lease expired: not "holding"
        for worker_id in ("w1", "w2"):  # not seen for long: live only while holding an unexpired lease
            budget = await session.get(WorkerBudget, worker_id)
            assert budget is not None
            budget.seen_at = utcnow() - timedelta(hours=1)
        session.add(WorkerBudget(worker_id="stale", machine="m3", limit_mb=4000, reserve_mb=256, budget_mb=3744,
                                 source="override", seen_at=utcnow() - timedelta(hours=2)))  # fmt: skip
        done = await jobs.create_job(session, input_path="y", uploaded=False, duration_s=3, aspect="9:16")
        done.state = "done"


async def reference_overview(db: Database) -> tuple[dict[str, int], admission.Snapshot]:
    """The same figures from separate plain ORM queries (what stats ran before the single statement)."""
    from datetime import timedelta

    from sqlalchemy import select

    from montage.db.models import WorkerBudget, utcnow

    now = utcnow()
    async with db.session() as session:
        counts = await jobs.counts_by_state(session)
        live = (await session.scalars(select(Job).where(Job.state.in_(("queued", "running"))))).all()
        budgets = (await session.scalars(select(WorkerBudget))).all()
    live = sorted(live, key=lambda j: j.created_at)
    waiting = [(j.id, j.status_text or "") for j in live
               if j.state == "queued" and (j.status_text or "").startswith(admission.WAITING_PREFIX)]  # fmt: skip
    reserved: dict[str, int] = {}
    for j in live:
        if j.state == "running" and j.machine is not None:
            reserved[j.machine] = reserved.get(j.machine, 0) + (j.reserved_mb or 0)
    holding = {j.worker_id for j in live if j.state == "running" and j.lease_expires_at and j.lease_expires_at > now}
    workers = [(w, w.seen_at > now - timedelta(seconds=admission.LIVE_S) or w.worker_id in holding)
               for w in sorted(budgets, key=lambda w: w.worker_id)]  # fmt: skip
    return counts, admission.Snapshot(waiting=waiting, reserved_mb=reserved, workers=workers)


def comparable(found: tuple[dict[str, int], admission.Snapshot]) -> tuple[object, ...]:
    counts, snap = found
    workers = [(w.worker_id, w.machine, w.limit_mb, w.reserve_mb, w.budget_mb, w.source, w.seen_at, live)
               for w, live in snap.workers]  # fmt: skip
    return counts, snap.waiting, snap.reserved_mb, workers


async def check_overview(db: Database, tmp_path: Path) -> None:
    await overview_scene(db, tmp_path)
    async with db.session() as session:
        got = await admission.overview(session)
    want = await reference_overview(db)
    assert comparable(got) == comparable(want)
    counts, snap = got
    # the scene is not trivial: each branch of the statement contributed rows
    assert counts["running"] == 2 and counts["queued"] == 3 and counts["done"] == 1, counts
    assert snap.waiting and snap.reserved_mb == {"m1": 1200}, snap
    live = {w.worker_id: live for w, live in snap.workers}
    assert live == {"stale": False, "w1": False, "w2": True, "w3": True}, live
    assert all(w.seen_at.tzinfo is not None for w, _ in snap.workers)


@pytest.mark.anyio
async def test_the_single_statement_overview_equals_the_separate_queries(tmp_path: Path, db: Database) -> None:
    await check_overview(db, tmp_path)
