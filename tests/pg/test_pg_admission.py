"""Memory admission's per-machine lock on a real PostgreSQL primary (SELECT ... FOR UPDATE)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from montage.db import migrate
from montage.db.database import Database, make_engine
from tests.pg.conftest import PgCluster
from tests.runtime.test_admission import check_overview, memory_settings, racing_claims

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_racing_claims_on_postgresql_never_reserve_more_than_the_budget(
    tmp_path: Path, pg_cluster: PgCluster, pg_db: str
) -> None:
    url = pg_cluster.url(pg_db)
    migrate.upgrade(url)
    settings = memory_settings(tmp_path, limit_mb=1500, reserve_mb=256, job_estimate_mb=600)

    async def go() -> list[int]:
        dbs = [Database(make_engine(url)) for _ in range(4)]
        try:
            return await racing_claims(dbs, settings)
        finally:
            for d in dbs:
                await d.dispose()

    reserved = asyncio.run(go())
    assert max(reserved) == 1200 and all(r <= 1244 for r in reserved), reserved


def test_the_single_statement_overview_on_postgresql_equals_the_separate_queries(
    tmp_path: Path, pg_cluster: PgCluster, pg_db: str
) -> None:
    """The UNION ALL's casts must line up on PostgreSQL too (it refuses to match unknown-typed NULLs)."""
    url = pg_cluster.url(pg_db)
    migrate.upgrade(url)

    async def go() -> None:
        db = Database(make_engine(url))
        try:
            await check_overview(db, tmp_path)
        finally:
            await db.dispose()

    asyncio.run(go())
