"""Turn database driver errors into one-paragraph Montage errors (no tracebacks for users)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from montage.errors import MontageError, UsageError


class DatabaseUnavailable(MontageError):
    """The database cannot be reached or refused the operation."""


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a driver error."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return f"{type(orig).__name__}: {text}"[:300]


@contextmanager
def translate_db_errors(what: str) -> Iterator[None]:
    """Re-raise SQLAlchemy / driver / Alembic errors as :class:`DatabaseUnavailable` / UsageError."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except CommandError as exc:
        raise UsageError(f"{what}: {exc}.") from None
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseUnavailable(
            f"{what}: the database is not reachable or refused the operation ({describe(exc)}).",
            hint="Check db.url (MONTAGE_DB__URL) and that the server is running.",
        ) from None
