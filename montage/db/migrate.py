"""Alembic, configured in code: ``montage db upgrade|downgrade|current`` and the service's readiness.

``alembic.ini`` at the repository root points at the same ``migrations/`` directory, so the plain
``alembic upgrade head`` / ``alembic downgrade -1`` commands (phase 5's rollback) work too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from montage.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for ``migrations/``; ``url`` beats the settings' ``db.url``."""
    from alembic.config import Config

    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise ConfigError(
            f"the migrations directory {MIGRATIONS_DIR} is missing; run Montage from its source checkout "
            "(pip install -e .)."
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal '%' in a password must be doubled.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    """The newest revision in ``migrations/versions``."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def upgrade(url: str, revision: str = "head") -> None:
    """``alembic upgrade REVISION`` against ``url``."""
    from alembic import command

    from montage.db.database import ensure_sqlite_dir

    ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "-1") -> None:
    """``alembic downgrade REVISION`` against ``url``."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The current revision of the database at ``url``."""
    from montage.db.database import make_engine

    async def _go() -> str | None:
        engine = make_engine(url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    return asyncio.run(_go())
