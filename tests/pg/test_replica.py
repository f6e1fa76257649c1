"""Read-replica routing against a real primary and a real read-only hot standby."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, literal, select
from sqlalchemy.exc import DBAPIError

from montage.db import jobs, migrate
from montage.db.database import Database, make_engine
from montage.db.models import Job
from tests.pg.conftest import PgCluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def migrated(pg_cluster: PgCluster, pg_db: str) -> str:
    migrate.upgrade(pg_cluster.url(pg_db))
    pg_cluster.wait_replayed()
    return pg_db


@pytest.fixture
async def routed(pg_cluster: PgCluster, migrated: str) -> AsyncIterator[Database]:
    db = Database(
        make_engine(pg_cluster.url(migrated)), make_engine(pg_cluster.url(migrated, standby=True)), read_fraction=1.0
    )
    yield db
    await db.dispose()


async def _on_standby(session: object) -> bool:
    return bool(await session.scalar(select(func.pg_is_in_recovery())))  # type: ignore[attr-defined]


async def test_a_misrouted_write_fails_on_the_standby(pg_cluster: PgCluster, migrated: str) -> None:
    wrong = Database(make_engine(pg_cluster.url(migrated, standby=True)))
    try:
        with pytest.raises(DBAPIError, match="read-only transaction"):
            async with wrong.begin() as session:
                await jobs.create_job(session, input_path="x", uploaded=False, duration_s=5, aspect="16:9")
    finally:
        await wrong.dispose()


async def test_reads_go_to_the_replica_writes_and_later_reads_to_the_primary(
    routed: Database, pg_cluster: PgCluster
) -> None:
    async with routed.session() as session:
        assert await _on_standby(session)  # a plain read in a replica session
        await session.scalar(select(func.count()).select_from(Job))
    async with routed.begin() as session:
        assert await _on_standby(session)
        job = await jobs.create_job(session, input_path="x", uploaded=False, duration_s=5, aspect="16:9")
        assert not await _on_standby(session)  # everything after a write: primary
        assert (await session.get(Job, job.id)) is not None
    async with routed.begin() as session:
        locked = await session.scalar(select(Job).where(Job.id == job.id).with_for_update())  # FOR UPDATE: primary
        assert locked is not None
        await jobs.cancel(session, job.id)
    reads = routed.counters.reads
    assert reads["replica"] >= 3 and reads["primary"] >= 1 and routed.counters.writes >= 2
    assert routed.counters.replica_fallbacks == 0


async def test_read_your_writes_with_a_stalled_replica(routed: Database, pg_cluster: PgCluster) -> None:
    pg_cluster.psql(pg_cluster.standby_port, "SELECT pg_wal_replay_pause()")
    try:
        async with routed.begin() as session:
            job = await jobs.create_job(session, input_path="x", uploaded=False, duration_s=5, aspect="16:9")
        async with routed.session() as session:  # a new session, reading from the stalled replica
            assert await session.get(Job, job.id) is None  # the replica really lags
        async with routed.session() as session:
            found = await jobs.get_job(session, job.id)
            assert found is not None and found.id == job.id  # re-read on the primary
    finally:
        pg_cluster.psql(pg_cluster.standby_port, "SELECT pg_wal_replay_resume()")


async def test_replica_errors_fall_back_to_primary_and_are_counted(pg_cluster: PgCluster, migrated: str) -> None:
    dead = "postgresql+asyncpg://montage@127.0.0.1:9/nowhere"
    db = Database(make_engine(pg_cluster.url(migrated)), make_engine(dead), read_fraction=1.0)
    try:
        async with db.session() as session:
            assert await session.scalar(select(literal(1))) == 1
            assert not await _on_standby(session)
        assert db.counters.replica_fallbacks >= 1 and db.counters.reads["primary"] >= 1
    finally:
        await db.dispose()


def test_default_read_fraction_is_about_five_percent(pg_cluster: PgCluster, migrated: str) -> None:
    from montage.settings import load_settings

    loaded = load_settings(
        overrides={"db": {"url": pg_cluster.url(migrated)}, "replica": {"url": pg_cluster.url(migrated, standby=True)}},
        environ={"USE_SETTINGS_V2": "true", "MONTAGE_ENV_FILE": "/nonexistent"},
    )
    db = Database.from_settings(loaded.settings)
    assert db.read_fraction == 0.05
    db._rng = random.Random(7)
    chosen = sum(db.session().info["use_replica"] for _ in range(4000))
    assert 0.04 < chosen / 4000 < 0.06


def test_api_submit_then_read_never_404s_through_the_replica(
    pg_cluster: PgCluster, migrated: str, tmp_path: Path
) -> None:
    from montage.service.app import create_app
    from tests.service.conftest import ServerThread, make_loaded

    loaded = make_loaded(tmp_path, pg_cluster.url(migrated))
    loaded.settings.replica.url = SecretStr(pg_cluster.url(migrated, standby=True))
    loaded.settings.replica.read_fraction = 1.0
    (tmp_path / "media" / "a.mp4").write_bytes(b"x")
    pg_cluster.psql(pg_cluster.standby_port, "SELECT pg_wal_replay_pause()")
    try:
        with ServerThread(create_app(loaded)) as base, httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(5):
                job = client.post("/v1/public/jobs", json={"path": "a.mp4", "duration": 5}).json()
                assert client.get(f"/v1/public/jobs/{job['id']}").status_code == 200
            metrics = client.get("/metrics").text
    finally:
        pg_cluster.psql(pg_cluster.standby_port, "SELECT pg_wal_replay_resume()")
    assert 'montage_db_reads_total{target="replica"}' in metrics
