"""Memory admission: a worker claims a job only when the job's estimate fits this machine's budget.

The one formula (also in the README, "Memory admission")::

    free_mb = limit_mb - memory.reserve_mb - sum(reserved_mb of the jobs running on this machine)
    admit  <=>  estimate_mb <= free_mb

* ``limit_mb`` is the limit detected from the worker's own cgroup (montage.runtime.memory_manager;
  ``memory.limit_mb`` overrides it).  The working set is not subtracted: a running job's memory is
  already counted by its reservation, and a job that has not peaked yet would otherwise be undercounted
  (three workers admitting three jobs before any of them peaks).
* Reservations live in the jobs table (``machine``, ``reserved_mb`` of ``running`` jobs), so every
  worker process on a machine sees the others' reservations; the claim takes a per-machine lock
  (PostgreSQL: ``SELECT ... FOR UPDATE`` on the machine's worker rows; SQLite: the transaction's
  first statement is a write, which takes the database's write lock) so two workers cannot both
  spend the same free memory.
* ``estimate_mb`` is fixed at submission: the largest measured peak of earlier jobs of the same
  resolution class (input pixels in units of 640x360, rounded up) and requested-duration class (30 s
  steps), plus :data:`MARGIN`; ``memory.job_estimate_mb`` (600 MB) when there is no such peak yet.
  Peaks come from the job cgroup's own counters (``memory_peaks`` table, with the plan's segment
  count), newest :data:`SAMPLES` per class.
* First come, first served: only the oldest queued job is considered.  When it does not fit it stays
  queued (no attempt used) with ``status_text`` "waiting for memory: needs N MB, M MB free".
* Every worker records its budget (``limit_mb - reserve_mb``) in ``worker_budgets``; a submission
  whose estimate exceeds the largest budget of any live worker is refused (422, both figures).  A
  worker is live when it claimed within :data:`LIVE_S` or holds an unexpired lease.  With no live
  worker at all, nothing is refused (there is nothing to compare with).

Callable from any claim path (the worker loop, a Celery task): :meth:`Admission.claim`.
"""

from __future__ import annotations

import functools
import json
import math
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    CompoundSelect,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from montage.db import jobs
from montage.db.database import Database
from montage.db.models import Job, JobState, MemoryPeak, UtcDateTime, WorkerBudget, utcnow
from montage.runtime.memory_manager import MemoryReading, can_admit, read_memory

if TYPE_CHECKING:
    from montage.settings import MemorySettings, Settings

MIB = 1024 * 1024
UNIT_PIXELS = 640 * 360
DURATION_STEP_S = 30.0
MARGIN = 1.2  # a measured peak is a sample, not a bound
MIN_ESTIMATE_MB = 64
SAMPLES = 20
LIVE_S = 60.0
WAITING_PREFIX = "waiting for memory"


def machine_name() -> str:
    return socket.gethostname()


def pixels_class(pixels: int | None) -> int:
    """The input's pixel count in units of 640x360, rounded up (360p 1, 720p 4, 1080p 9); 0 unknown."""
    return 0 if not pixels or pixels <= 0 else math.ceil(pixels / UNIT_PIXELS)


def duration_class(duration_s: float) -> int:
    return max(1, math.ceil(duration_s / DURATION_STEP_S))


def probe_pixels(path: Path) -> int | None:
    """Width x height of the first video stream (ffprobe), or None when it cannot be read."""
    from montage.core import ffmpeg, proc
    from montage.errors import MontageError

    try:
        probe = ffmpeg.locate().ffprobe
    except MontageError:
        return None
    if probe is None or not path.is_file():
        return None
    done = proc.run([probe, "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                     "-of", "csv=p=0:s=x", str(path)], timeout_s=30)  # fmt: skip
    try:
        width, height = (int(v) for v in done.stdout.strip().splitlines()[0].split("x")[:2])
    except (ValueError, IndexError):
        return None
    return width * height if done.ok and width > 0 and height > 0 else None


async def estimate_mb(session: AsyncSession, pixels: int | None, duration_s: float, default_mb: int) -> int:
    """The reservation for a new job (see the module docstring)."""
    peaks = (
        await session.scalars(
            select(MemoryPeak.peak_mb)
            .where(
                MemoryPeak.pixels_class == pixels_class(pixels),
                MemoryPeak.duration_class == duration_class(duration_s),
            )
            .order_by(MemoryPeak.id.desc())
            .limit(SAMPLES)
        )
    ).all()
    if not peaks:
        return default_mb
    return max(MIN_ESTIMATE_MB, math.ceil(max(peaks) * MARGIN))


async def largest_live_budget(session: AsyncSession) -> tuple[int, str] | None:
    """(budget MB, worker id) of the live worker with the largest budget; None when no worker is live."""
    now = utcnow()
    holding = select(Job.worker_id).where(Job.state == JobState.RUNNING.value, Job.lease_expires_at > now)
    row = (
        await session.execute(
            select(WorkerBudget.budget_mb, WorkerBudget.worker_id)
            .where(or_(WorkerBudget.seen_at > now - timedelta(seconds=LIVE_S), WorkerBudget.worker_id.in_(holding)))
            .order_by(WorkerBudget.budget_mb.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else (int(row.budget_mb), str(row.worker_id))


def too_large(estimate: int, largest: tuple[int, str] | None) -> str | None:
    """Why a job of ``estimate`` MB can never be admitted, or None."""
    if largest is None or estimate <= largest[0]:
        return None
    budget, worker = largest
    return (
        f"this job needs an estimated {estimate} MB of memory but the largest budget of any live worker is "
        f"{budget} MB (worker {worker}: memory limit minus memory.reserve_mb); it would wait forever. Use a "
        "smaller input or a shorter duration, or give the workers more memory."
    )


@dataclass(frozen=True)
class Estimate:
    pixels: int | None
    estimate_mb: int
    refusal: str | None  # why no live worker could ever admit it (the 422's message), or None


async def submission_estimate(session: AsyncSession, memory: MemorySettings, path: Path, duration_s: float) -> Estimate:
    """At submission: probe the input, estimate the job, compare with the largest live budget."""
    import asyncio

    pixels = await asyncio.to_thread(probe_pixels, path)
    estimate = await estimate_mb(session, pixels, duration_s, memory.job_estimate_mb)
    refusal = too_large(estimate, await largest_live_budget(session)) if memory.admission else None
    return Estimate(pixels, estimate, refusal)


async def reserved_on(session: AsyncSession, machine: str) -> int:
    """MB reserved by the jobs running on ``machine``."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Job.reserved_mb), 0)).where(
            Job.state == JobState.RUNNING.value, Job.machine == machine
        )
    )
    return int(total or 0)


async def waiting_count(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).where(Job.state == JobState.QUEUED.value, Job.status_text.like(f"{WAITING_PREFIX}%"))
    )
    return int(count or 0)


@dataclass(frozen=True)
class Waiting:
    """The head of the queue does not fit: nothing was claimed."""

    job_id: str
    status_text: str
    running_here: int  # jobs running on this machine (0: it will not fit here until the limit changes)


LOST_RACE = Waiting("", "another worker claimed the job first", 0)  # internal: look again


@dataclass
class Admission:
    """Admission for one worker: ``register`` once, then ``claim`` instead of ``jobs.claim_next``."""

    settings: Settings
    machine: str = ""
    root: Path = Path("/")

    def __post_init__(self) -> None:
        self.machine = self.machine or machine_name()

    @classmethod
    def from_settings(cls, settings: Settings, machine: str = "") -> Admission:
        return cls(settings, machine)

    @property
    def memory(self) -> MemorySettings:
        return self.settings.memory

    def reading(self) -> MemoryReading:
        return read_memory(self.settings, root=self.root)

    def _budget_values(self, reading: MemoryReading) -> dict[str, object]:
        limit = int(reading.limit_mb)
        reserve = int(self.memory.reserve_mb)
        return {"machine": self.machine, "limit_mb": limit, "reserve_mb": reserve,
                "budget_mb": max(0, limit - reserve), "source": reading.source, "seen_at": utcnow()}  # fmt: skip

    async def register(self, db: Database, worker_id: str) -> MemoryReading:
        """Record this worker's budget (and that it is alive)."""
        reading = self.reading()
        async with db.begin() as session:
            if not await self._touch(session, worker_id, reading):
                session.add(WorkerBudget(worker_id=worker_id, **self._budget_values(reading)))
        return reading

    async def unregister(self, db: Database, worker_id: str) -> None:
        async with db.begin() as session:
            await session.execute(delete(WorkerBudget).where(WorkerBudget.worker_id == worker_id))

    async def _touch(self, session: AsyncSession, worker_id: str, reading: MemoryReading) -> bool:
        result = await session.execute(
            update(WorkerBudget).where(WorkerBudget.worker_id == worker_id).values(**self._budget_values(reading))
        )
        return bool(getattr(result, "rowcount", 0))

    async def claim(
        self, db: Database, worker_id: str, lease_s: float, job_id: str | None = None
    ) -> jobs.Lease | Waiting | None:
        """Claim the oldest queued job if it fits (a lease), else say why it waits; None: queue empty.

        ``job_id``: the Celery engine's task names its job; the same formula decides for that job
        (the broker's queue order stands in for first come, first served), None when it is not queued.
        """
        reading = self.reading()
        for _ in range(1 if job_id else 5):  # a worker on another machine may take the head first; look again
            found = await self._claim_once(db, worker_id, lease_s, reading, job_id)
            if found is not LOST_RACE:
                return found
        return None

    async def _claim_once(
        self, db: Database, worker_id: str, lease_s: float, reading: MemoryReading, job_id: str | None = None
    ) -> jobs.Lease | Waiting | None:
        async with db.begin() as session:
            # The per-machine lock (see the module docstring), then the write that holds SQLite's lock.
            await session.execute(
                select(WorkerBudget.worker_id)
                .where(WorkerBudget.machine == self.machine)
                .order_by(WorkerBudget.worker_id)
                .with_for_update()
            )
            if not await self._touch(session, worker_id, reading):
                session.add(WorkerBudget(worker_id=worker_id, **self._budget_values(reading)))
                await session.flush()
            head = (
                await session.execute(
                    select(Job.id, Job.estimate_mb, Job.status_text)
                    .where(Job.state == JobState.QUEUED.value, *([Job.id == job_id] if job_id else []))
                    .order_by(Job.created_at)
                    .limit(1)
                )
            ).first()
            if head is None:
                return None
            estimate = int(head.estimate_mb or self.memory.job_estimate_mb)
            reserved = await reserved_on(session, self.machine)
            ok, _why = can_admit(estimate, reading, self.memory.reserve_mb, reserved_mb=reserved)
            if ok:
                lease = await jobs.take(
                    session, head.id, worker_id, lease_s, reserved_mb=estimate, machine=self.machine, status_text=None
                )
                return LOST_RACE if lease is None else lease
            free = max(0, int(reading.limit_mb - self.memory.reserve_mb - reserved))
            text = f"{WAITING_PREFIX}: needs {estimate} MB, {free} MB free"
            if text != head.status_text:
                await jobs.note_waiting(session, head.id, text, machine=self.machine, worker=worker_id)
            running = await session.scalar(
                select(func.count()).where(Job.state == JobState.RUNNING.value, Job.machine == self.machine)
            )
            return Waiting(head.id, text, int(running or 0))

    async def record_peak(self, db: Database, job_id: str, peak_bytes: int, plan_path: Path | None) -> None:
        """Keep a finished job's measured peak for the estimates of later jobs like it."""
        segments = _segment_count(plan_path)
        async with db.begin() as session:
            job = await session.get(Job, job_id)
            if job is None:
                return
            session.add(MemoryPeak(job_id=job_id, machine=self.machine, pixels_class=pixels_class(job.input_pixels),
                                   duration_class=duration_class(job.duration_s), segments=segments,
                                   peak_mb=math.ceil(peak_bytes / MIB), at=utcnow()))  # fmt: skip


def _segment_count(plan_path: Path | None) -> int | None:
    if plan_path is None:
        return None
    try:
        segments = json.loads(plan_path.read_text()).get("segments")
    except (OSError, ValueError, AttributeError):
        return None
    return len(segments) if isinstance(segments, list) else None


FORMULA = (
    "free_mb = limit_mb - memory.reserve_mb - reserved_mb of the jobs running on the machine; "
    "admit the oldest queued job if its estimate_mb <= free_mb"
)


@dataclass(frozen=True)
class Snapshot:
    """What admission looks like now, for /v1/admin/stats and /metrics."""

    waiting: list[tuple[str, str]]  # (job id, status text), oldest first
    reserved_mb: dict[str, int]  # per machine
    workers: list[tuple[WorkerBudget, bool]]  # (budget row, live)


async def snapshot(session: AsyncSession) -> Snapshot:
    """What admission looks like now (one statement; see :func:`overview`)."""
    return (await overview(session))[1]


@functools.cache
def _overview_statement() -> CompoundSelect[Any]:
    """Jobs per state, the queued and running jobs, and the worker budgets as one ``UNION ALL``.

    /v1/admin/stats runs it on every request. Through aiosqlite each statement costs a few thread
    hops (about 1.5 ms), and three statements made the endpoint 40 % slower than before admission
    (phase 2's canary, 2026-12-01); one statement costs one. Every branch has the same columns,
    typed by explicit casts so that PostgreSQL can match them, and named by the first branch: kind,
    key, state, text, machine, n1, n2, n3, worker, at (see :func:`overview`). Built once (building
    it took longer than running it); ``now`` is bound.
    """

    def none(kind: TypeEngine[Any]) -> ColumnElement[Any]:
        return cast(null(), kind)

    def kind(name: str) -> ColumnElement[str]:
        return cast(literal_column(f"'{name}'"), String(8))

    text_t, int_t, at_t = Text(), Integer(), UtcDateTime()
    # The first branch names the columns for the whole UNION (rows are read by these names).
    counts = select(kind("count").label("kind"), none(text_t).label("key"), cast(Job.state, Text).label("state"),
                    none(text_t).label("text"), none(text_t).label("machine"), cast(func.count(), Integer).label("n1"),
                    none(int_t).label("n2"), none(int_t).label("n3"), none(text_t).label("worker"),
                    none(at_t).label("at")).group_by(Job.state)  # fmt: skip
    now = bindparam("now", type_=UtcDateTime())
    leased = case((and_(Job.state == JobState.RUNNING.value, Job.lease_expires_at > now), 1), else_=0)
    live = select(kind("job"), cast(Job.id, Text), cast(Job.state, Text), Job.status_text, cast(Job.machine, Text),
                  Job.reserved_mb, leased, none(int_t), cast(Job.worker_id, Text), Job.created_at,
                  ).where(Job.state.in_((JobState.QUEUED.value, JobState.RUNNING.value)))  # fmt: skip
    budgets = select(kind("budget"), cast(WorkerBudget.worker_id, Text), none(text_t), WorkerBudget.source,
                     cast(WorkerBudget.machine, Text), WorkerBudget.limit_mb, WorkerBudget.reserve_mb,
                     WorkerBudget.budget_mb, none(text_t), WorkerBudget.seen_at)  # fmt: skip
    return union_all(counts, live, budgets)


async def overview(session: AsyncSession) -> tuple[dict[str, int], Snapshot]:
    """(jobs per state, the admission snapshot) from one statement.

    Job rows carry: key = job id, text = status text, n1 = reserved MB, n2 = 1 when its lease is
    unexpired, at = created_at. Budget rows: key = worker id, text = source, n1..n3 = limit,
    reserve and budget MB, at = seen_at.
    """
    now = utcnow()
    counts = {s.value: 0 for s in JobState}
    live: list[Any] = []
    workers: list[WorkerBudget] = []
    for row in (await session.execute(_overview_statement(), {"now": now})).all():
        if row.kind == "count":
            counts[str(row.state)] = int(row.n1)
        elif row.kind == "job":
            live.append(row)
        else:
            workers.append(WorkerBudget(worker_id=row.key, machine=row.machine, limit_mb=row.n1, reserve_mb=row.n2,
                                        budget_mb=row.n3, source=row.text, seen_at=row.at))  # fmt: skip
    live.sort(key=lambda r: r.at)  # oldest first
    queued, running = JobState.QUEUED.value, JobState.RUNNING.value
    waiting = [(str(r.key), str(r.text)) for r in live
               if r.state == queued and (r.text or "").startswith(WAITING_PREFIX)]  # fmt: skip
    reserved: dict[str, int] = {}
    for r in live:
        if r.state == running and r.machine is not None:
            reserved[str(r.machine)] = reserved.get(str(r.machine), 0) + int(r.n1 or 0)
    holding = {r.worker for r in live if r.n2}
    workers.sort(key=lambda w: w.worker_id)
    flagged = [(w, w.seen_at > now - timedelta(seconds=LIVE_S) or w.worker_id in holding) for w in workers]
    return counts, Snapshot(waiting=waiting, reserved_mb=reserved, workers=flagged)


async def totals(session: AsyncSession) -> tuple[int, int]:
    """(jobs admitted, jobs OOM-killed) in one query, for /metrics."""
    oom = case((and_(Job.state == JobState.FAILED.value, Job.error.like("out of memory (%")), 1))
    row = (await session.execute(select(func.count(Job.reserved_mb), func.count(oom)))).one()
    return int(row[0] or 0), int(row[1] or 0)
