"""``montage worker``: run a job worker against the configured database (``montage serve`` starts some too)."""

from __future__ import annotations

import argparse
from pathlib import Path

from montage.errors import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", dest="worker_id", default=None, help="worker id (default: HOST-PID)")
    parser.add_argument("--log-file", type=Path, default=None, help="also append the log to this file")
    parser.add_argument("--once", action="store_true", help="exit when the queue is empty")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from montage.db.database import Database
    from montage.db.errors import translate_db_errors
    from montage.runtime.admission import Admission
    from montage.service.logs import setup_logging
    from montage.settings import load_settings
    from montage.workers.executor import executor_from_settings
    from montage.workers.worker import Worker, WorkerConfig, install_drain_handlers

    loaded = load_settings()
    settings = loaded.settings
    setup_logging(loaded, args.log_file or settings.service.log_file)
    executor = executor_from_settings(settings)
    config = WorkerConfig.from_settings(settings, args.worker_id)

    async def go() -> int:
        db = Database.from_settings(settings)
        worker = Worker(db, executor, config, Admission.from_settings(settings) if settings.memory.admission else None)
        install_drain_handlers(worker)
        try:
            return await worker.run(once=args.once)
        finally:
            await db.dispose()

    with translate_db_errors(f"montage worker {config.worker_id}"):
        asyncio.run(go())
    # Drained: a second SIGTERM (e.g. from `montage serve` stopping) must not turn a clean exit into -15.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return ExitCode.OK
