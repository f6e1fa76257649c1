"""``montage worker``: run a job worker against the configured database (``montage serve`` starts some too).

``--engine celery`` runs a Celery worker instead (montage/workers/celery_engine.py): it takes render
tasks from the Redis broker, on any machine that reaches the broker, the database and the shared
media and data directories.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from montage.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from montage.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", dest="worker_id", default=None, help="worker id (default: HOST-PID)")
    parser.add_argument("--log-file", type=Path, default=None, help="also append the log to this file")
    parser.add_argument("--once", action="store_true", help="exit when the queue is empty (local engine)")
    parser.add_argument(
        "--engine",
        choices=("local", "celery"),
        default=None,
        help="poll the database (local) or take Celery tasks (default: settings service.engine)",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="celery: renders at a time (pool processes)")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="celery: serve this worker's /metrics on PORT (default: settings celery.metrics_port)",
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="celery: this worker's own scratch directory (temporary files, metrics files)",
    )


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

    overrides = {"service": {"engine": args.engine}} if args.engine else {}
    loaded = load_settings(overrides=overrides)
    settings = loaded.settings
    setup_logging(loaded, args.log_file or settings.service.log_file)
    if settings.service.engine == "celery":
        return _run_celery(args, settings)
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


def _run_celery(args: argparse.Namespace, settings: Settings) -> int:
    import os
    import shutil
    import socket

    worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    if args.concurrency < 1:
        raise UsageError(f"--concurrency {args.concurrency}: expected a number of processes, 1 or more.")
    scratch = args.scratch or Path(settings.data_dir) / "scratch" / worker_id
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(scratch)  # the renderers' temporary files stay on this worker's disk
    port = args.metrics_port if args.metrics_port is not None else settings.celery.metrics_port
    if port is not None:
        # Multiprocess mode: the pool children write their metrics into files that this process serves.
        # The variable must be set before prometheus_client is first imported in this process.
        prom_dir = scratch / "prometheus"
        shutil.rmtree(prom_dir, ignore_errors=True)
        prom_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom_dir)
        from montage.workers.celery_engine import start_metrics_server

        start_metrics_server(port, prom_dir)
    from montage.workers.celery_engine import run_worker

    return run_worker(settings, worker_id, concurrency=args.concurrency, metrics_port=port)
