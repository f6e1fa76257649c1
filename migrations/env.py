"""Alembic environment, in the shape of ``alembic init -t async``.

Three ways in:

* offline (``alembic upgrade --sql``): renders SQL for the URL;
* an injected connectable (``config.attributes["connection"]``): a sync Connection (e.g. from
  ``AsyncConnection.run_sync``), an Engine-like object with ``connect()``, or an AsyncEngine;
  used by the tests (pytest-alembic) and by code that already holds a connection;
* otherwise an async engine for ``sqlalchemy.url`` (``-x url=...``, else Montage's ``db.url``).

SQLite cannot ALTER most things, so migrations run in batch mode there (``render_as_batch``).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from montage.db.models import Base

config = context.config
target_metadata = Base.metadata
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from montage.settings import load_settings

    return load_settings().settings.db.url.get_secret_value()


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)  # type: ignore[arg-type]


def run_migrations_offline() -> None:
    url = _url()
    _configure(
        url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, render_as_batch=url.startswith("sqlite")
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(engine: AsyncEngine, *, dispose: bool) -> None:
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        if dispose:
            await engine.dispose()


def run_migrations_online() -> None:
    injected = config.attributes.get("connection")
    if injected is None:
        asyncio.run(run_async_migrations(create_async_engine(_url(), poolclass=pool.NullPool), dispose=True))
    elif isinstance(injected, AsyncEngine):
        asyncio.run(run_async_migrations(injected, dispose=False))
    elif isinstance(injected, Connection):
        do_run_migrations(injected)
    else:  # an Engine, or an engine-like wrapper whose connect() hands back a live connection
        with injected.connect() as connection:
            do_run_migrations(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
