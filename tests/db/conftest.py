"""pytest-alembic wiring: the project's migrations against a real SQLite file (and PostgreSQL in tests/pg)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from montage.db.database import Database, make_engine
from montage.db.migrate import alembic_config as make_alembic_config


@pytest.fixture
def alembic_config() -> Config:
    return make_alembic_config()


@pytest.fixture
def alembic_engine(tmp_path: Path) -> Iterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'alembic.db'}")
    yield engine
    # pytest-alembic drives the engine with its own asyncio.run(); dispose the same way.
    import asyncio

    asyncio.run(engine.dispose())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    from montage.db import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'montage.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
async def database(sqlite_url: str) -> AsyncIterator[Database]:
    db = Database(make_engine(sqlite_url))
    yield db
    await db.dispose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
