"""Job state machine and leases, as conditional SQL updates that are safe across processes.

States: queued -> running -> succeeded | failed; queued/running -> cancelled; failed/cancelled ->
queued (retry).  A claim takes a lease with a fresh random token; heartbeats and completion only
succeed while the job is still ``running`` with that token, so a worker whose lease expired (and
whose job was re-queued and claimed by someone else) can no longer write a result.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from montage.db.database import Database, RoutingSession
from montage.db.models import TERMINAL_STATES, Job, JobEvent, JobState, utcnow


def new_job_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Lease:
    job_id: str
    token: str
    input_path: str
    duration_s: float
    aspect: str
    attempt: int


def _event(job_id: str, kind: str, **detail: Any) -> JobEvent:
    return JobEvent(job_id=job_id, at=utcnow(), kind=kind, detail=detail or None)


async def create_job(
    session: AsyncSession,
    *,
    input_path: str,
    uploaded: bool,
    duration_s: float,
    aspect: str,
    job_id: str | None = None,
    input_pixels: int | None = None,
    estimate_mb: int | None = None,
) -> Job:
    job = Job(
        id=job_id or new_job_id(),
        state=JobState.QUEUED.value,
        input_path=input_path,
        uploaded=uploaded,
        duration_s=duration_s,
        aspect=aspect,
        attempts=0,
        created_at=utcnow(),
        input_pixels=input_pixels,
        estimate_mb=estimate_mb,
    )
    session.add(job)
    session.add(_event(job.id, "submitted"))
    await session.flush()
    return job


async def get_job(session: AsyncSession, job_id: str) -> Job | None:
    """The job, read-your-writes: a miss on a (possibly lagging) replica is re-read on the primary."""
    job = await session.get(Job, job_id)
    sync = session.sync_session
    if job is None and isinstance(sync, RoutingSession) and sync.info.get("use_replica"):
        await session.run_sync(lambda _: sync.pin_primary())
        job = await session.get(Job, job_id)
    return job


async def list_jobs(session: AsyncSession, state: str | None = None, limit: int = 100) -> list[Job]:
    stmt = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if state is not None:
        stmt = stmt.where(Job.state == state)
    return list((await session.scalars(stmt)).all())


async def claim_next(db: Database, worker_id: str, lease_s: float) -> Lease | None:
    """Claim the oldest queued job with a fresh lease, or None when the queue is empty (no admission:
    workers go through montage.runtime.admission, which calls :func:`take`)."""
    for _ in range(5):  # another worker may win the race for a candidate; try the next one
        async with db.begin() as session:
            candidate = await session.scalar(
                select(Job.id).where(Job.state == JobState.QUEUED.value).order_by(Job.created_at).limit(1)
            )
            if candidate is None:
                return None
            lease = await take(session, candidate, worker_id, lease_s)
            if lease is not None:
                return lease
    return None


async def claim(db: Database, job_id: str, worker_id: str, lease_s: float, **admitted: Any) -> Lease | None:
    """Claim this job if it is queued (a dispatched task names its job); None if it is not."""
    async with db.begin() as session:
        return await take(session, job_id, worker_id, lease_s, **admitted)


async def take(session: AsyncSession, job_id: str, worker_id: str, lease_s: float, **admitted: Any) -> Lease | None:
    """queued -> running with a fresh lease (one attempt used); None when someone else took it first.

    ``admitted`` are extra column values set by admission (``reserved_mb``, ``machine``, ``status_text``).
    """
    token = secrets.token_hex(16)
    now = utcnow()
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED.value)
        .values(
            state=JobState.RUNNING.value,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=lease_s),
            worker_id=worker_id,
            attempts=Job.attempts + 1,
            started_at=now,
            **admitted,
        )
        .returning(Job.input_path, Job.duration_s, Job.aspect, Job.attempts)
    )
    row = result.first()
    if row is None:
        return None
    detail = {k: v for k, v in admitted.items() if v is not None}
    session.add(_event(job_id, "claimed", worker=worker_id, attempt=row.attempts, **detail))
    return Lease(job_id, token, row.input_path, row.duration_s, row.aspect, row.attempts)


async def note_waiting(session: AsyncSession, job_id: str, text: str, **detail: Any) -> None:
    """A queued job that admission could not fit: say why in its status (no attempt used)."""
    await session.execute(
        update(Job).where(Job.id == job_id, Job.state == JobState.QUEUED.value).values(status_text=text)
    )
    session.add(_event(job_id, "waiting", status=text, **detail))


def _leased(job_id: str, token: str) -> Any:
    return (Job.id == job_id) & (Job.lease_token == token) & (Job.state == JobState.RUNNING.value)


async def heartbeat(db: Database, lease: Lease, lease_s: float) -> bool:
    """Extend the lease; False when it was lost (expired and re-queued, or cancelled)."""
    async with db.begin() as session:
        result = await session.execute(
            update(Job)
            .where(_leased(lease.job_id, lease.token))
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
            .returning(Job.id)
        )
        return result.first() is not None


async def finish(
    db: Database,
    lease: Lease,
    *,
    succeeded: bool,
    result_path: str | None = None,
    plan_path: str | None = None,
    error: str | None = None,
) -> bool:
    """Record the outcome if the lease is still held; False means someone else owns the job now."""
    state = JobState.SUCCEEDED if succeeded else JobState.FAILED
    async with db.begin() as session:
        result = await session.execute(
            update(Job)
            .where(_leased(lease.job_id, lease.token))
            .values(
                state=state.value,
                lease_token=None,
                lease_expires_at=None,
                result_path=result_path,
                plan_path=plan_path,
                error=error,
                finished_at=utcnow(),
            )
            .returning(Job.id)
        )
        if result.first() is None:
            return False
        session.add(_event(lease.job_id, state.value, error=error) if error else _event(lease.job_id, state.value))
        return True


async def release(db: Database, lease: Lease, reason: str) -> bool:
    """Give a running job back to the queue (worker draining past its grace period)."""
    async with db.begin() as session:
        result = await session.execute(
            update(Job)
            .where(_leased(lease.job_id, lease.token))
            .values(state=JobState.QUEUED.value, lease_token=None, lease_expires_at=None, worker_id=None)
            .returning(Job.id)
        )
        if result.first() is None:
            return False
        session.add(_event(lease.job_id, "released", reason=reason))
        return True


async def requeue_expired(db: Database, max_attempts: int) -> list[str]:
    """Re-queue running jobs whose lease expired (their worker died); fail those out of attempts."""
    now = utcnow()
    async with db.begin() as session:
        expired = (
            Job.state == JobState.RUNNING.value,
            Job.lease_expires_at.is_not(None),
            Job.lease_expires_at < now,
        )
        failed = await session.execute(
            update(Job)
            .where(*expired, Job.attempts >= max_attempts)
            .values(
                state=JobState.FAILED.value,
                lease_token=None,
                lease_expires_at=None,
                finished_at=now,
                error=f"lease expired {max_attempts} times (worker died or hung)",
            )
            .returning(Job.id)
        )
        failed_ids = [r[0] for r in failed]
        requeued = await session.execute(
            update(Job)
            .where(*expired)
            .values(state=JobState.QUEUED.value, lease_token=None, lease_expires_at=None, worker_id=None)
            .returning(Job.id)
        )
        ids = [r[0] for r in requeued]
        for job_id in ids:
            session.add(_event(job_id, "requeued", reason="lease expired"))
        for job_id in failed_ids:
            session.add(_event(job_id, "failed", reason="lease expired too often"))
        return ids


class TransitionError(Exception):
    """The job is not in a state that allows the requested transition."""

    def __init__(self, job_id: str, state: str, action: str) -> None:
        super().__init__(f"job {job_id} is {state}; cannot {action} it")
        self.job_id, self.state, self.action = job_id, state, action


async def cancel(session: AsyncSession, job_id: str) -> Job | None:
    """Cancel a queued or running job (a running job's worker loses its lease and kills its child)."""
    job = await session.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None:
        return None
    if job.state in {s.value for s in TERMINAL_STATES}:
        raise TransitionError(job_id, job.state, "cancel")
    job.state = JobState.CANCELLED.value
    job.lease_token = None
    job.lease_expires_at = None
    job.finished_at = utcnow()
    session.add(_event(job_id, "cancelled"))
    await session.flush()
    return job


async def retry(session: AsyncSession, job_id: str) -> Job | None:
    """Queue a failed or cancelled job again."""
    job = await session.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None:
        return None
    if job.state not in {JobState.FAILED.value, JobState.CANCELLED.value}:
        raise TransitionError(job_id, job.state, "retry")
    job.state = JobState.QUEUED.value
    job.error = None
    job.finished_at = None
    job.started_at = None
    job.worker_id = None
    session.add(_event(job_id, "retried"))
    await session.flush()
    return job


async def finished_among(db: Database, job_ids: list[str]) -> set[str]:
    """Those of ``job_ids`` that exist and are finished (succeeded, failed, cancelled), read on the
    primary: a lagging replica could still show a job as queued, or not at all."""
    if not job_ids:
        return set()
    done = [s.value for s in TERMINAL_STATES]
    async with db.session() as session:
        sync = session.sync_session
        if isinstance(sync, RoutingSession):
            await session.run_sync(lambda _: sync.pin_primary())
        rows = await session.execute(select(Job.id).where(Job.id.in_(job_ids), Job.state.in_(done)))
        return {str(job_id) for (job_id,) in rows}


async def counts_by_state(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Job.state, func.count()).group_by(Job.state))
    counts = {s.value: 0 for s in JobState}
    counts.update({state: int(n) for state, n in rows})
    return counts


async def finished_durations(session: AsyncSession, limit: int = 10000) -> list[tuple[str, float]]:
    """(state, seconds from start to finish) of the most recent finished jobs."""
    rows = await session.execute(
        select(Job.state, Job.started_at, Job.finished_at)
        .where(Job.finished_at.is_not(None), Job.started_at.is_not(None))
        .order_by(Job.finished_at.desc())
        .limit(limit)
    )
    return [(state, (end - start).total_seconds()) for state, start, end in rows if start and end]


async def purgeable(session: AsyncSession, cutoff: datetime) -> list[Job]:
    """Finished jobs older than ``cutoff`` whose files have not been removed yet."""
    stmt = select(Job).where(Job.finished_at.is_not(None), Job.finished_at < cutoff, Job.purged_at.is_(None))
    return list((await session.scalars(stmt)).all())


async def mark_purged(session: AsyncSession, job_ids: list[str]) -> None:
    if job_ids:
        await session.execute(update(Job).where(Job.id.in_(job_ids)).values(purged_at=utcnow()))


async def record_event(db: Database, job_id: str, kind: str, **detail: Any) -> None:
    async with db.begin() as session:
        session.add(_event(job_id, kind, **detail))


async def spawned_groups(db: Database, job_id: str) -> list[dict[str, Any]]:
    """The ``spawned`` events of earlier attempts: which host ran which process group."""
    async with db.session() as session:
        rows = await session.scalars(
            select(JobEvent.detail).where(JobEvent.job_id == job_id, JobEvent.kind == "spawned")
        )
        return [dict(d) for d in rows if d]
