"""Engines and sessions: the primary, an optional read replica, and per-session routing.

Nothing is global: a :class:`Database` is built from settings by whoever needs it (the app's
lifespan, a worker, a CLI command) and handed down by dependency injection.

Routing rules (decided once per session, when it is created):

* with a replica configured, a session reads from it with probability ``read_fraction``;
* flushes, INSERT/UPDATE/DELETE, ``SELECT ... FOR UPDATE`` and every statement after a write in
  the same session go to the primary;
* a read that fails on the replica is retried on the primary and counted
  (``Database.counters.replica_fallbacks``); a write is never retried, so a write that somehow
  reached the read-only standby fails loudly.
"""

from __future__ import annotations

import random
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from montage.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection

    from montage.settings import Settings

PRIMARY = "primary"
REPLICA = "replica"


@dataclass
class DbCounters:
    """Statement counts per target, read by the metrics endpoint (thread-safe increments).

    ``writes`` counts bind decisions for flushes and DML (always the primary), not rows.
    """

    reads: dict[str, int] = field(default_factory=lambda: {PRIMARY: 0, REPLICA: 0})
    writes: int = 0
    replica_fallbacks: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_read(self, target: str) -> None:
        with self._lock:
            self.reads[target] = self.reads.get(target, 0) + 1

    def add_write(self) -> None:
        with self._lock:
            self.writes += 1

    def add_fallback(self) -> None:
        with self._lock:
            self.replica_fallbacks += 1


def _is_plain_read(statement: object) -> bool:
    return isinstance(statement, Select) and statement._for_update_arg is None


class RoutingSession(Session):
    """A sync session (wrapped by AsyncSession) that picks the primary or the replica per statement."""

    # SQLAlchemy's own signatures are untyped (Any) here; only these two overrides are exempt.
    def __init__(  # type: ignore[explicit-any]
        self,
        *args: Any,
        primary: Engine,
        replica: Engine | None,
        counters: DbCounters,
        use_replica: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._primary = primary
        self._replica = replica
        self._counters = counters
        self.info["use_replica"] = use_replica and replica is not None
        self.info["wrote"] = False

    def get_bind(self, mapper: object = None, clause: object = None, **kwargs: object) -> Engine:
        if self._flushing or (clause is not None and not _is_plain_read(clause)):
            self.info["wrote"] = True
            self._counters.add_write()
        if self.info["use_replica"] and not self.info["wrote"] and self._replica is not None:
            return self._replica
        return self._primary

    # execute(), scalar(), scalars(), get() and lazy loads all funnel through _execute_internal.
    def _execute_internal(self, statement: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[explicit-any]
        if not _is_plain_read(statement):  # DML, FOR UPDATE, text(): the primary, for the rest of the session
            self.info["wrote"] = True
            return super()._execute_internal(statement, *args, **kwargs)
        if self.info["wrote"] or not self.info["use_replica"]:
            self._counters.add_read(PRIMARY)
            return super()._execute_internal(statement, *args, **kwargs)
        try:
            result = super()._execute_internal(statement, *args, **kwargs)
        except (DBAPIError, OSError, TimeoutError):
            # The replica is down, lagging past a conflict, or refused: read from the primary.
            self._counters.add_fallback()
            self.rollback()
            self.info["use_replica"] = False
            self._counters.add_read(PRIMARY)
            return super()._execute_internal(statement, *args, **kwargs)
        self._counters.add_read(REPLICA)
        return result

    def pin_primary(self) -> None:
        """Send every later statement of this session to the primary (read-your-writes)."""
        if self.info["use_replica"]:
            self.rollback()
        self.info["use_replica"] = False


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: object) -> None:
    # WAL lets the API read while a worker writes; busy_timeout waits for the lock instead of failing.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a SQLite database file (the embedded default lives in var/)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str, *, connect_timeout_s: float = 5.0, pool_size: int = 5, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(
            "db.url is not a valid SQLAlchemy URL; expected e.g. sqlite+aiosqlite:///var/montage.db or "
            "postgresql+asyncpg://user@host:5432/montage."
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.drivername != "sqlite+aiosqlite":
            raise ConfigError(f"db.url driver {parsed.drivername!r} is not async; use sqlite+aiosqlite://...")
        ensure_sqlite_dir(url)
        engine = create_async_engine(parsed, echo=echo, connect_args={"timeout": connect_timeout_s})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        if parsed.drivername != "postgresql+asyncpg":
            raise ConfigError(f"db.url driver {parsed.drivername!r} is not async; use postgresql+asyncpg://...")
        return create_async_engine(
            parsed,
            echo=echo,
            pool_size=pool_size,
            pool_pre_ping=True,
            pool_timeout=connect_timeout_s,
            connect_args={"timeout": connect_timeout_s, "command_timeout": max(connect_timeout_s * 6, 30.0)},
        )
    raise ConfigError(f"db.url backend {backend!r} is not supported; expected sqlite+aiosqlite or postgresql+asyncpg.")


class Database:
    """The primary engine, an optional replica engine, and a routing session factory."""

    def __init__(
        self,
        primary: AsyncEngine,
        replica: AsyncEngine | None = None,
        *,
        read_fraction: float = 0.05,
        rng: random.Random | None = None,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.read_fraction = read_fraction if replica is not None else 0.0
        self.counters = DbCounters()
        self._rng = rng or random.Random()
        self._factory = async_sessionmaker(primary, expire_on_commit=False, sync_session_class=RoutingSession)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """Build from a :class:`montage.settings.Settings` (its ``db`` and ``replica`` sections)."""
        db = settings.db
        primary = make_engine(
            db.url.get_secret_value(), connect_timeout_s=db.connect_timeout_s, pool_size=db.pool_size, echo=db.echo
        )
        replica = None
        if settings.replica.url is not None and settings.replica.url.get_secret_value():
            replica = make_engine(
                settings.replica.url.get_secret_value(),
                connect_timeout_s=db.connect_timeout_s,
                pool_size=db.pool_size,
                echo=db.echo,
            )
        return cls(primary, replica, read_fraction=settings.replica.read_fraction)

    @property
    def backend(self) -> str:
        return self.primary.dialect.name

    def session(self) -> AsyncSession:
        """A new session; whether its reads use the replica is decided now."""
        use_replica = self.replica is not None and self._rng.random() < self.read_fraction
        return self._factory(
            primary=self.primary.sync_engine,
            replica=self.replica.sync_engine if self.replica is not None else None,
            counters=self.counters,
            use_replica=use_replica,
        )

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction committed on success, rolled back on error."""
        async with self.session() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.primary.dispose()
        if self.replica is not None:
            await self.replica.dispose()
