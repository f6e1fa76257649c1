"""Runtime flags in the database: the store the service reads on every request and job.

One store, two doors: ``PUT /v1/admin/flags/{name}`` and ``montage flags set`` (which the phase
rollbacks' ``set_flag`` runs) both write the ``flags`` table *and* mirror the value into the flags
file (``ops.flags_file``).  The file exists because one flag, ``USE_SETTINGS_V2``, must be known
before the database URL is (it selects the settings loader); at service start-up the file's flags
are copied into the table, so a ``montage flags set`` run while the database was down still wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from montage.db.database import Database
from montage.db.models import Flag, utcnow

if TYPE_CHECKING:
    from montage.flags import FlagValue
    from montage.settings import Settings


async def get_flags(session: AsyncSession) -> dict[str, object]:
    return {f.name: f.value for f in (await session.scalars(select(Flag).order_by(Flag.name))).all()}


async def put_flag(session: AsyncSession, name: str, value: object) -> None:
    row = await session.get(Flag, name)
    if row is None:
        session.add(Flag(name=name, value=value, updated_at=utcnow()))
    else:
        row.value = value
        row.updated_at = utcnow()
    await session.flush()


async def set_flag_everywhere(db: Database, flags_file: Path, name: str, value: FlagValue) -> None:
    """Write the flag to the table, then mirror it into the flags file."""
    from montage.flags import write_flag

    async with db.begin() as session:
        await put_flag(session, name, value)
    write_flag(flags_file, name, value)


async def import_flags_file(db: Database, flags_file: Path) -> dict[str, object]:
    """Copy the flags file into the table (service start-up); returns what was imported."""
    from montage.flags import read_flags

    flags = read_flags(flags_file)
    if flags:
        async with db.begin() as session:
            for name, value in flags.items():
                await put_flag(session, name, value)
    return flags


def mirror_to_database(settings: Settings, name: str, value: object) -> str:
    """After ``montage flags set`` wrote the file: write the table too when the database is there.

    Returns a one-line note for the user.  A database that does not exist yet, is not migrated or
    is unreachable is reported, not an error: the service copies the file into the table when it
    starts.
    """
    import asyncio

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from montage.db.errors import describe

    url = settings.db.url.get_secret_value()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
        return f"no database at {parsed.database} yet; the service imports the flags file at start-up"

    async def _write() -> None:
        db = Database.from_settings(settings)
        try:
            async with db.begin() as session:
                await put_flag(session, name, value)
        finally:
            await db.dispose()

    try:
        asyncio.run(asyncio.wait_for(_write(), timeout=settings.db.connect_timeout_s * 2))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return f"database not updated ({describe(exc)}); the service imports the flags file at start-up"
    return "database flags table updated"
