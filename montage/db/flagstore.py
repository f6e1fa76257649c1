"""Runtime flags in the database: the store the service reads on every request and job.

One store, two doors: ``PUT /v1/admin/flags/{name}`` and ``montage flags set`` (which the phase
rollbacks' ``set_flag`` runs) both call :func:`set_flag`, which writes the ``flags`` table *and*
the flags file (``ops.flags_file``).  The file exists because one flag, ``USE_SETTINGS_V2``, must be
known before the database URL is (it selects the settings loader); at service start-up the file's
flags are copied into the table.  Names, values and their meaning are :mod:`montage.core.flags`'.

Order of the two writes, so that a failure never leaves them disagreeing: validate first (nothing
is written for an unknown name or a bad value), then the file (atomic, and undoable: we know what
was there), then the table in one transaction; if the table write fails, the file is restored to
what it held before and the error is raised.  The reverse order could not be undone: a committed
row cannot be taken back if the file write then fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from montage.core import flags as core_flags
from montage.db.database import Database
from montage.db.models import Flag, utcnow
from montage.errors import MontageError

if TYPE_CHECKING:
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


async def set_flag(db: Database, flags_file: Path, name: str, value: object) -> core_flags.FlagValue:
    """Validate, write the flags file, then the table; a table failure restores the file (see above).

    Returns the stored value.  Raises :class:`montage.core.flags.FlagError` (nothing written) for an
    unknown name or a value that is not one of the flag's accepted forms.
    """
    stored = core_flags.validate(name, value)
    previous = core_flags.write_flag(flags_file, name, stored)
    try:
        async with db.begin() as session:
            await put_flag(session, name, stored)
    except BaseException:
        core_flags.restore_file(flags_file, previous)
        raise
    return stored


async def import_flags_file(db: Database, flags_file: Path) -> dict[str, core_flags.FlagValue]:
    """Copy the flags file into the table (service start-up); returns what was imported.

    Every entry is validated first: a bad name or value in a hand-edited file stops the import with
    an error naming it, before anything is written.
    """
    flags = core_flags.read_flags(flags_file)
    where = f"flags file {flags_file}"
    checked = {name: _checked(name, value, where) for name, value in flags.items()}
    if checked:
        async with db.begin() as session:
            for name, value in checked.items():
                await put_flag(session, name, value)
    return checked


def _checked(name: str, value: object, where: str) -> core_flags.FlagValue:
    try:
        core_flags.spec(name)
    except core_flags.FlagError as exc:
        raise core_flags.FlagError(f"{where}: {exc}") from None
    return core_flags.validate(name, value, where)


def set_flag_from_cli(settings: Settings, flags_file: Path, name: str, value: object) -> str:
    """``montage flags set`` on the app's own flags file: :func:`set_flag` when the database exists.

    Returns a one-line note for the user.  When there is no database yet (SQLite file absent) only
    the file is written: the service copies it into the table when it first starts.  A database
    that is configured but unreachable or not migrated is an error and nothing changes (the file
    is restored); ``montage flags set --file PATH`` writes only a file.
    """
    import asyncio

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from montage.db.errors import describe

    stored = core_flags.validate(name, value)
    url = settings.db.url.get_secret_value()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
        core_flags.write_flag(flags_file, name, stored)
        return f"no database at {parsed.database} yet; the service imports the flags file at start-up"

    async def _write() -> None:
        db = Database.from_settings(settings)
        try:
            await set_flag(db, flags_file, name, stored)
        finally:
            await db.dispose()

    try:
        asyncio.run(asyncio.wait_for(_write(), timeout=settings.db.connect_timeout_s * 2))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise MontageError(
            f"flag {name} not set: the database is unreachable or not migrated ({describe(exc)}); the flags "
            f"file {flags_file} was left as it was, so both stores still agree.",
            hint="Start or migrate the database (montage db upgrade), or write only a file with --file PATH.",
        ) from None
    return "database flags table updated"
