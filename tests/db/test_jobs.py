"""The job state machine, leases, API keys and flags on a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from montage.db import flagstore, jobs, keys
from montage.db.database import Database
from montage.db.models import Job

pytestmark = pytest.mark.anyio


async def _submit(db: Database, name: str = "in.mp4") -> str:
    async with db.begin() as session:
        job = await jobs.create_job(session, input_path=name, uploaded=False, duration_s=10, aspect="16:9")
        return job.id


async def _state(db: Database, job_id: str) -> Job:
    async with db.session() as session:
        job = await jobs.get_job(session, job_id)
        assert job is not None
        return job


async def test_claim_heartbeat_finish_checks_the_token(database: Database) -> None:
    job_id = await _submit(database)
    lease = await jobs.claim_next(database, "w1", lease_s=30)
    assert lease is not None and lease.job_id == job_id and lease.attempt == 1
    assert await jobs.claim_next(database, "w2", lease_s=30) is None  # nothing else queued
    assert await jobs.heartbeat(database, lease, lease_s=30)
    stale = jobs.Lease(job_id, "not-the-token", lease.input_path, 10, "16:9", 1)
    assert not await jobs.heartbeat(database, stale, lease_s=30)
    assert not await jobs.finish(database, stale, succeeded=True, result_path="x")
    assert await jobs.finish(database, lease, succeeded=True, result_path="out.mp4")
    job = await _state(database, job_id)
    assert job.state == "succeeded" and job.result_path == "out.mp4" and job.lease_token is None
    assert not await jobs.finish(database, lease, succeeded=False, error="late")  # no double completion


async def test_expired_lease_is_requeued_and_old_token_is_dead(database: Database) -> None:
    job_id = await _submit(database)
    first = await jobs.claim_next(database, "w1", lease_s=0.05)
    assert first is not None
    await asyncio.sleep(0.2)
    assert await jobs.requeue_expired(database, max_attempts=3) == [job_id]
    second = await jobs.claim_next(database, "w2", lease_s=30)
    assert second is not None and second.token != first.token and second.attempt == 2
    assert not await jobs.finish(database, first, succeeded=True, result_path="stale")
    assert await jobs.finish(database, second, succeeded=True, result_path="fresh")
    assert (await _state(database, job_id)).result_path == "fresh"


async def test_lease_expiring_too_often_fails_the_job(database: Database) -> None:
    job_id = await _submit(database)
    assert await jobs.claim_next(database, "w1", lease_s=0.01) is not None
    await asyncio.sleep(0.1)
    assert await jobs.requeue_expired(database, max_attempts=1) == []
    job = await _state(database, job_id)
    assert job.state == "failed" and "lease expired" in (job.error or "")


async def test_cancel_and_retry_transitions(database: Database) -> None:
    job_id = await _submit(database)
    lease = await jobs.claim_next(database, "w1", lease_s=30)
    assert lease is not None
    async with database.begin() as session:
        assert (await jobs.cancel(session, job_id)) is not None
    assert not await jobs.heartbeat(database, lease, lease_s=30)  # the worker learns it lost the job
    async with database.begin() as session:
        with pytest.raises(jobs.TransitionError):
            await jobs.cancel(session, job_id)
    async with database.begin() as session:
        job = await jobs.retry(session, job_id)
        assert job is not None and job.state == "queued"
    async with database.begin() as session:
        with pytest.raises(jobs.TransitionError):
            await jobs.retry(session, job_id)
        assert await jobs.cancel(session, "nope") is None
    async with database.session() as session:
        counts = await jobs.counts_by_state(session)
    assert counts["queued"] == 1 and counts["running"] == 0


async def test_api_keys_hashed_verified_revoked(database: Database) -> None:
    async with database.begin() as session:
        row, plain = await keys.create_key(session, "ops")
    assert plain.startswith("mtg_") and row.secret_hash not in plain
    async with database.begin() as session:
        assert (await keys.verify_key(session, plain)) is not None
        assert await keys.verify_key(session, plain[:-1] + ("x" if plain[-1] != "x" else "y")) is None
        assert await keys.verify_key(session, "garbage") is None
        await keys.revoke_key(session, row.id)
    async with database.begin() as session:
        assert await keys.verify_key(session, plain) is None


async def test_flags_table_and_file_are_one_store(database: Database, tmp_path: Path) -> None:
    flags_file = tmp_path / "flags.json"
    await flagstore.set_flag(database, flags_file, "USE_SETTINGS_V2", False)
    async with database.session() as session:
        assert await flagstore.get_flags(session) == {"USE_SETTINGS_V2": False}
    assert '"USE_SETTINGS_V2": false' in flags_file.read_text()
    flags_file.write_text('{"USE_SETTINGS_V2": true, "WORKERS_PAUSED": 1}\n')  # written while the DB was down
    assert await flagstore.import_flags_file(database, flags_file) == {"USE_SETTINGS_V2": True, "WORKERS_PAUSED": True}
    async with database.session() as session:
        assert await flagstore.get_flags(session) == {"USE_SETTINGS_V2": True, "WORKERS_PAUSED": True}
