"""``/v1/admin``: jobs, flags, configuration, statistics and API keys.  Every route needs a key."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from montage.db import flagstore, jobs, keys
from montage.service.context import Context, Session, require_admin
from montage.service.errors import ApiError, responses
from montage.service.schemas import (
    AdmissionStats,
    ConfigEntry,
    ConfigOut,
    DbStats,
    EngineStats,
    Flags,
    FlagUpdate,
    JobList,
    JobOut,
    KeyCreate,
    KeyCreated,
    MemoryStats,
    StateName,
    Stats,
    WaitingJob,
    WorkerBudgetOut,
    job_out,
)

if TYPE_CHECKING:
    from montage.runtime.admission import Snapshot

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=responses(400, 401, 403, 503),
)
FlagName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.]{1,128}$")]


@router.get("/jobs", response_model=JobList, responses=responses(422))
async def list_jobs(
    session: Session,
    state: Annotated[StateName | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobList:
    return JobList(jobs=[job_out(j) for j in await jobs.list_jobs(session, state, limit)])


async def _transition(ctx: Context, session: Session, job_id: str, action: str) -> JobOut:
    fn = jobs.cancel if action == "cancel" else jobs.retry
    try:
        job = await fn(session, job_id)
    except jobs.TransitionError as exc:
        raise ApiError(409, "invalid_transition", str(exc)) from None
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id!r}")
    await session.commit()
    if ctx.dispatcher is not None:  # celery engine: revoke its tasks / publish the retried job
        if action == "cancel":
            await ctx.dispatcher.revoke(ctx.db, job_id)
        else:
            await ctx.dispatcher.dispatch(ctx.db, job_id)
    return job_out(job)


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, responses=responses(404, 409))
async def cancel_job(job_id: str, ctx: Context, session: Session) -> JobOut:
    return await _transition(ctx, session, job_id, "cancel")


@router.post("/jobs/{job_id}/retry", response_model=JobOut, responses=responses(404, 409))
async def retry_job(job_id: str, ctx: Context, session: Session) -> JobOut:
    return await _transition(ctx, session, job_id, "retry")


@router.get("/flags", response_model=Flags)
async def get_flags(session: Session) -> Flags:
    return Flags(flags=await flagstore.get_flags(session))


@router.put("/flags/{name}", response_model=Flags, responses=responses(422))
async def put_flag(name: FlagName, body: FlagUpdate, ctx: Context, session: Session) -> Flags:
    # A known flag, in the database and the flags file, both or neither (see db/flagstore.py).  A
    # comment, not a docstring: the docstring would become the OpenAPI description.
    from montage.core.flags import FlagError

    try:
        await flagstore.set_flag(ctx.db, ctx.flags_file, name, body.value)
    except FlagError as exc:
        raise ApiError(422, "invalid_flag", str(exc)) from None
    return Flags(flags=await flagstore.get_flags(session))


@router.get("/config", response_model=ConfigOut, summary="the effective configuration, secrets masked")
async def get_config(ctx: Context) -> ConfigOut:
    from montage.settings import masked_view

    rows = masked_view(ctx.loaded)
    return ConfigOut(
        source=ctx.loaded.source,
        settings={name: ConfigEntry(value=value, origin=origin) for name, value, origin in rows},
    )


@router.get("/stats", response_model=Stats)
async def get_stats(ctx: Context, session: Session) -> Stats:
    from montage.runtime import admission

    c = ctx.db.counters
    counts, snap = await admission.overview(session)  # one statement: this endpoint is polled
    return Stats(
        jobs=counts,
        db=DbStats(
            backend=ctx.db.backend,
            replica=ctx.db.replica is not None,
            read_fraction=ctx.db.read_fraction,
            reads=dict(c.reads),
            writes=c.writes,
            replica_fallbacks=c.replica_fallbacks,
        ),
        memory=_memory_stats(ctx),
        engine=await _engine_stats(ctx),
        admission=_admission_stats(snap),
    )


async def _engine_stats(ctx: Context) -> EngineStats | None:
    if ctx.dispatcher is None:
        return None
    import asyncio

    from montage.workers.celery_engine import event_counts

    broker = await asyncio.to_thread(ctx.dispatcher.broker_snapshot)
    counts = await event_counts(ctx.db)
    return EngineStats.model_validate({"engine": "celery", **broker, **counts})


def _admission_stats(snap: Snapshot) -> AdmissionStats:
    from montage.runtime import admission

    workers = [WorkerBudgetOut(worker_id=w.worker_id, machine=w.machine, limit_mb=w.limit_mb, reserve_mb=w.reserve_mb,
                               budget_mb=w.budget_mb, source=w.source, seen_at=w.seen_at, live=live)
               for w, live in snap.workers]  # fmt: skip
    return AdmissionStats(formula=admission.FORMULA, waiting=[WaitingJob(id=i, status_text=t) for i, t in snap.waiting],
                          reserved_mb=snap.reserved_mb, workers=workers)  # fmt: skip


@functools.cache
def _job_cgroups() -> tuple[bool, str]:
    from montage.runtime.jobcgroup import JobCgroups

    found = JobCgroups.detect()  # probed (and logged) once per process
    return found.available, found.reason


def _memory_stats(ctx: Context) -> MemoryStats:
    from montage.errors import MontageError
    from montage.runtime.memory_manager import read_memory

    available, reason = _job_cgroups()
    try:
        reading = read_memory(ctx.settings)
    except MontageError as exc:
        return MemoryStats(limit_mb=None, working_set_mb=None, available_mb=None, source=f"unreadable: {exc}",
                           job_cgroups=available, job_cgroups_reason=reason)  # fmt: skip
    return MemoryStats(limit_mb=round(reading.limit_mb, 1), working_set_mb=round(reading.used_mb, 1),
                       available_mb=round(reading.available_mb, 1), source=reading.source,
                       job_cgroups=available, job_cgroups_reason=reason)  # fmt: skip


@router.post("/keys", status_code=201, response_model=KeyCreated, responses=responses(422))
async def create_key(body: KeyCreate, session: Session) -> KeyCreated:
    row, plain = await keys.create_key(session, body.name)
    await session.commit()
    return KeyCreated(id=row.id, name=row.name, key=plain, created_at=row.created_at)


@router.delete("/keys/{key_id}", status_code=204, response_class=Response, responses=responses(404))
async def revoke_key(key_id: str, session: Session) -> Response:
    if await keys.revoke_key(session, key_id) is None:
        raise ApiError(404, "key_not_found", f"no API key with id {key_id!r}")
    await session.commit()
    return Response(status_code=204)
