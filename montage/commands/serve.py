"""``montage serve``: the HTTP API plus embedded worker processes, on one machine.

The first log line is exactly ``Config source=settings_v2`` (or ``legacy``).  The database is
migrated to head at start-up (``--no-migrate`` skips that).  SIGTERM/SIGINT drain: the API stops
accepting connections and finishes its requests, workers stop claiming jobs and get
``service.drain_grace_s`` to finish the running ones, then everything exits with status 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from montage.errors import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="listen address (default: settings service.host)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default: settings service.port)")
    parser.add_argument("--log-file", type=Path, default=None, help="also write the log to this file")
    parser.add_argument("--workers", type=int, default=None, help="embedded worker processes (default: settings)")
    parser.add_argument("--engine", choices=("local", "celery"), default=None,
                        help="local: embedded workers poll the database; celery: publish tasks to the broker "
                        "(embedded Celery workers only with celery.embedded_workers) (default: settings)")  # fmt: skip
    parser.add_argument("--no-migrate", action="store_true", help="do not upgrade the database at start-up")
    parser.add_argument("--smoke", action="store_true",
                        help="start, probe /v1/public/ready over HTTP, drain and exit (0 when ready)")  # fmt: skip
    parser.add_argument("--write-openapi", type=Path, default=None, metavar="FILE",
                        help="write the OpenAPI document to FILE and exit")  # fmt: skip


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    service: dict[str, object] = {}
    for name in ("host", "port", "log_file", "workers", "engine"):
        value = getattr(args, name)
        if value is not None:
            service[name] = str(value) if isinstance(value, Path) else value
    return {"service": service} if service else {}


def run(args: argparse.Namespace) -> int:
    if args.write_openapi is not None:
        from montage.service.openapi import write

        write(args.write_openapi)
        print(f"wrote {args.write_openapi}")
        return ExitCode.OK

    import logging

    from montage.db.errors import translate_db_errors
    from montage.service.logs import setup_logging
    from montage.service.supervisor import serve_forever
    from montage.settings import load_settings

    loaded = load_settings(overrides=_overrides(args))
    settings = loaded.settings
    setup_logging(loaded, settings.service.log_file, truncate=True)
    log = logging.getLogger("montage.serve")
    if not args.no_migrate:
        from montage.db import migrate

        url = settings.db.url.get_secret_value()
        with translate_db_errors("montage serve (migrating the database)"):
            before = migrate.current(url)
            migrate.upgrade(url)
        head = migrate.head_revision()
        if before == head:
            log.info("database at revision %s (head)", head)
        else:
            log.info("database migrated from revision %s to %s (head)", before or "base", head)
    from montage.service.imports import probe

    resolve = settings.media.resolve_module
    for module, error in sorted(probe(str(resolve) if resolve else None).items()):
        log.error("import probe: %s cannot be imported (%s); counted in import_errors_total", module, error)
    from montage.service.split import admin_port, serve_split

    split_port = admin_port(loaded)  # split mode: phase 4's rollback (montage/service/split.py)
    if split_port is not None:
        return serve_split(loaded, split_port, smoke=args.smoke)
    return serve_forever(loaded, smoke=args.smoke)
