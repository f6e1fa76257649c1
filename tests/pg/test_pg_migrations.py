"""pytest-alembic's checks on a real PostgreSQL primary (tests/db runs them on SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from alembic.config import Config
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from pytest_alembic.tests.experimental import test_downgrade_leaves_no_trace
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from montage.db import migrate
from tests.pg.conftest import PgCluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

__all__ = [
    "test_downgrade_leaves_no_trace",
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]


@pytest.fixture
def alembic_config() -> Config:
    return migrate.alembic_config()


@pytest.fixture
def alembic_engine(pg_cluster: PgCluster, pg_db: str) -> Iterator[AsyncEngine]:
    # pytest-alembic runs every step in its own asyncio.run(): pooled asyncpg connections would
    # outlive their event loop, so no pooling here.
    engine = create_async_engine(pg_cluster.url(pg_db), poolclass=NullPool)
    yield engine
    asyncio.run(engine.dispose())


def test_upgrade_downgrade_round_trip_via_montage_db(pg_cluster: PgCluster, pg_db: str) -> None:
    url = pg_cluster.url(pg_db)
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head_revision()
    tables = pg_cluster.psql(pg_cluster.primary_port, "SELECT string_agg(tablename, ',' ORDER BY tablename) "
                             "FROM pg_tables WHERE schemaname = 'public'", db=pg_db)  # fmt: skip
    assert tables == "alembic_version,api_keys,flags,job_events,jobs,memory_peaks,worker_budgets"
    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    left = pg_cluster.psql(pg_cluster.primary_port, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                           "AND tablename <> 'alembic_version'", db=pg_db)  # fmt: skip
    assert left == "0"
