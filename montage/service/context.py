"""What request handlers need, built once per app and injected (no module-level globals)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from montage.db.database import Database
from montage.db.errors import DatabaseUnavailable, describe
from montage.service.errors import ApiError
from montage.service.metrics import ServiceMetrics
from montage.settings import LoadedSettings, Settings

if TYPE_CHECKING:
    from montage.workers.celery_engine import Dispatcher


@dataclass
class ServiceContext:
    loaded: LoadedSettings
    db: Database
    metrics: ServiceMetrics
    head_revision: str | None
    owns_db: bool = False
    dispatcher: Dispatcher | None = None  # service.engine = celery: publishes render tasks

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def flags_file(self) -> Path:
        from montage.core.flags import flags_path

        return flags_path(self.settings.ops.flags_file)


def get_context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


Context = Annotated[ServiceContext, Depends(get_context)]


async def get_session(ctx: Context) -> AsyncIterator[AsyncSession]:
    """One routed session per request; connection failures become 503, not a hang or a 500.

    Handlers that write commit explicitly before returning: the code after ``yield`` may run after
    the response was sent, and a client must be able to read its own write at once.
    """
    session = ctx.db.session()
    try:
        yield session
        await session.commit()
    except (OSError, TimeoutError) as exc:
        await session.rollback()
        raise DatabaseUnavailable(f"database unreachable: {describe(exc)}") from exc
    except BaseException:
        await session.rollback()
        raise
    finally:
        await session.close()


Session = Annotated[AsyncSession, Depends(get_session)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an admin API key")
_bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")


async def _authenticate(session: AsyncSession, key: str | None, bearer: HTTPAuthorizationCredentials | None) -> str:
    from montage.db.keys import verify_key

    presented = key or (bearer.credentials if bearer is not None else None)
    if not presented:
        raise ApiError(401, "unauthorized", "an API key is required (X-API-Key header or Authorization: Bearer)",
                       {"WWW-Authenticate": "Bearer"})  # fmt: skip
    row = await verify_key(session, presented)
    if row is None:
        raise ApiError(403, "forbidden", "the API key is not valid or has been revoked")
    return row.id


async def require_admin(
    session: Session,
    key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The id of the presented, active API key; 401 without one, 403 for a wrong or revoked one."""
    return await _authenticate(session, key, bearer)


async def public_access(
    ctx: Context,
    session: Session,
    key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """Public endpoints need a key only when ``service.require_key_for_public`` is set."""
    if not ctx.settings.service.require_key_for_public:
        return None
    return await _authenticate(session, key, bearer)
