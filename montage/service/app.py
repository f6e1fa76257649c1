"""The app factory: ``create_app(loaded_settings)`` -> FastAPI app with /v1/public, /v1/admin, /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response

from montage.db.database import Database
from montage.settings import LoadedSettings

log = logging.getLogger("montage.service")
API_TITLE = "Montage"


def create_app(
    loaded: LoadedSettings, *, database: Database | None = None, routers: tuple[str, ...] = ("public", "admin")
) -> FastAPI:
    """Build the app.  ``database`` is injected by tests and by ``montage serve``; else built from settings.

    ``routers`` picks what it serves: both (the merged app) or one of them (the split mode's apps,
    montage/service/split.py).  Nothing connects here: the lifespan opens the database and closes it again.
    """
    from montage import __version__
    from montage.db.migrate import head_revision
    from montage.service import admin, public
    from montage.service.context import ServiceContext
    from montage.service.errors import BodyLimitMiddleware, install_error_handlers
    from montage.service.metrics import MetricsMiddleware, ServiceMetrics
    from montage.service.timeouts import BodyTimeoutMiddleware

    db = database if database is not None else Database.from_settings(loaded.settings)
    ctx = ServiceContext(
        loaded=loaded,
        db=db,
        metrics=ServiceMetrics(db.counters),
        head_revision=head_revision(),
        owns_db=database is None,
    )
    if loaded.settings.service.engine == "celery":
        from montage.workers.celery_engine import Dispatcher

        ctx.dispatcher = Dispatcher(loaded.settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from sqlalchemy.exc import SQLAlchemyError

        from montage.db.errors import describe
        from montage.db.flagstore import import_flags_file
        from montage.errors import UsageError

        try:
            imported = await import_flags_file(ctx.db, ctx.flags_file)
            if imported:
                log.info("flags file %s copied into the database: %s", ctx.flags_file, sorted(imported))
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("could not copy the flags file into the database (%s); /ready reports it", describe(exc))
        except UsageError as exc:  # a hand-edited flags file with a bad name or value: nothing imported
            log.error("flags file not imported: %s", exc)
        relay = None
        stop_relay = asyncio.Event()
        if ctx.dispatcher is not None and "public" in routers:  # one relay per service (split mode: the public app)
            from montage.workers.celery_engine import run_relay

            relay = asyncio.create_task(run_relay(ctx.db, ctx.dispatcher, stop_relay))
        try:
            yield
        finally:
            if relay is not None:
                stop_relay.set()
                await relay
            if ctx.dispatcher is not None:
                ctx.dispatcher.close()
            if ctx.owns_db:
                await ctx.db.dispose()

    app = FastAPI(
        title=API_TITLE,
        version=__version__,
        description="Long footage in, short highlight montage out. Admin routes need an API key.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for name in routers:
        app.include_router({"public": public.router, "admin": admin.router}[name])

    if not loaded.settings.service.require_key_for_public:
        from montage.service.openapi import allow_anonymous

        plain_openapi = app.openapi

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                app.openapi_schema = allow_anonymous(plain_openapi())
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        await refresh_job_metrics(ctx)
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # The multipart envelope adds a little to the file itself; the handler checks the file's exact size.
    body_limit = loaded.settings.service.upload_max_mb * 1024 * 1024 + 64 * 1024
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=loaded.settings.service.read_timeout_s)
    app.add_middleware(BodyLimitMiddleware, limit=body_limit)
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics)
    return app


async def refresh_job_metrics(ctx: object) -> None:
    """Read job counts and durations for the scrape; a database outage shows as montage_db_up 0."""
    from sqlalchemy.exc import SQLAlchemyError

    from montage.db import jobs
    from montage.errors import MontageError
    from montage.runtime import admission
    from montage.runtime.memory_manager import read_memory
    from montage.service.context import ServiceContext
    from montage.service.imports import failed_job_imports

    assert isinstance(ctx, ServiceContext)
    snap = ctx.metrics.collector.snapshot
    try:
        reading = read_memory(ctx.settings)
        snap.memory = (reading.limit_mb, reading.used_mb, reading.available_mb)
    except MontageError as exc:  # unreadable cgroup files: the gauges are left out, /v1/admin/stats says why
        log.warning("metrics: memory unreadable: %s", exc)
        snap.memory = None
    try:
        async with ctx.db.session() as session:
            snap.counts, memory = await admission.overview(session)
            snap.durations = await jobs.finished_durations(session)
            snap.admitted, snap.oom_killed = await admission.totals(session)
            failed = await jobs.list_jobs(session, "failed", 1000)
        snap.waiting, snap.reserved_mb = len(memory.waiting), memory.reserved_mb
        snap.job_import_errors = failed_job_imports(j.error for j in failed)
        snap.db_up = True
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("metrics: jobs database unavailable: %s", exc)
        snap.db_up = False
