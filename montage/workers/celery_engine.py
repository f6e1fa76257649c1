"""The celery engine (``service.engine = celery``): Celery tasks over a Redis broker dispatch jobs.

The database stays the source of truth; the broker only carries wake-ups.  Submission commits the
job row, then publishes a task naming the job id (:meth:`Dispatcher.dispatch`).  The task claims
*that* job through the same conditional update and lease token as the local worker
(:func:`montage.db.jobs.claim`) and runs it with :meth:`montage.workers.worker.Worker.execute`
(heartbeats, job timeout, result published only while the token holds), so a redelivered, relayed
or duplicated task finds the job no longer queued and does nothing.

No job is stranded: the relay (:func:`relay_once`, run by ``montage serve``) is an outbox scan.  It
re-queues jobs whose lease expired (their worker died) and publishes again every queued job that
was never dispatched (the broker was down at submission), was given back (released, re-queued,
retried) after its last dispatch, or was last dispatched longer ago than ``celery.relay_after_s``
(doubling per re-publish, so a long queue is not flooded).  Recovery from a dead worker is lease
expiry plus the relay, not the broker's redelivery: with late acknowledgement Redis redelivers an
unacknowledged task only after the visibility timeout, which must be longer than the longest job
(else a slow render would be handed to a second worker), so about an hour; the lease notices a dead
worker within ``service.lease_s``.

Housekeeping that the local worker's maintenance does: the relay also removes the files of jobs past
``service.retention_hours`` (the API serves results from the data directory the workers write to),
and every task ends by removing the empty cgroups of finished jobs whose worker was SIGKILLed on its machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from montage.errors import ConfigError, Refused

if TYPE_CHECKING:
    from montage.db.database import Database
    from montage.settings import Settings

log = logging.getLogger("montage.celery")

TASK_NAME = "montage.render"
REGISTRY_PREFIX = "montage:workers:"  # + worker id: {"version", "host", "pid", ...}, expires unless renewed
REGISTRY_TTL_S = 30
REGISTRY_EVERY_S = 10.0
ADMISSION_RETRY_S = 5.0
ADMISSION_MAX_RETRIES = 120  # ten minutes back in the queue; then the task is dropped and the relay publishes anew
RELAY_BACKOFF_CAP = 6  # relay_after_s * 2**6 at most between re-publishes of one queued job
TIME_LIMIT_MARGIN_S = 60.0
# Event kinds in job_events (the outbox's memory and the /v1/admin/stats counters).
DISPATCHED, RELAYED, REDELIVERED, PUBLISH_FAILED = "dispatched", "relayed", "redelivered", "publish_failed"
GIVEN_BACK = ("requeued", "released", "retried")  # after these the job needs a new task


@functools.cache
def code_version() -> str:
    """``VERSION+DIGEST``: the package version and a digest of every montage source file's bytes."""
    from montage import __version__
    from montage.core.files import sha256_file

    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def shown_url(url: str) -> str:
    """The broker URL with its password masked, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:****@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def broker_url(settings: Settings) -> str:
    secret = settings.celery.broker_url
    url = secret.get_secret_value() if secret is not None else ""
    if not url:
        raise ConfigError(
            "service.engine is celery but celery.broker_url is not set; set MONTAGE_CELERY__BROKER_URL "
            "(e.g. redis://localhost:6379/0, or redis://:PASSWORD@host:6379/0) or celery.broker_url in the "
            "settings file."
        )
    return url


def visibility_timeout_s(settings: Settings) -> float:
    return settings.celery.visibility_timeout_s or settings.service.job_timeout_s + 600.0


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's configuration, each reliability setting with its reason."""
    svc, cel = settings.service, settings.celery
    return {
        "broker_url": broker_url(settings),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # Redis hands an unacknowledged task to another worker after this.  Longer than any job
            # (else a slow render would run twice); dead workers are found by their lease instead.
            "visibility_timeout": visibility_timeout_s(settings),
            "socket_connect_timeout": cel.publish_timeout_s,  # a blackholed broker fails a publish fast
            "health_check_interval": 10,
        },
        # Acknowledge after the task ran: a worker that dies mid-render leaves its message unacknowledged.
        "task_acks_late": True,
        # A pool child killed (SIGKILL, OOM) puts the message back instead of acknowledging it as failed;
        # the next delivery finds the job leased (or re-queued) and the database decides.
        "task_reject_on_worker_lost": True,
        # One message per worker process: a busy worker must not sit on tasks another could run.
        "worker_prefetch_multiplier": 1,
        # A child whose RSS grew past this (a leak across renders) is replaced after its task (KiB).
        "worker_max_memory_per_child": cel.max_memory_per_child_mb * 1024,
        # The worker enforces service.job_timeout_s itself (kills the renderer, fails the job); Celery's
        # limits are the backstop for a task stuck outside the renderer.
        "task_soft_time_limit": svc.job_timeout_s + TIME_LIMIT_MARGIN_S,
        "task_time_limit": svc.job_timeout_s + 2 * TIME_LIMIT_MARGIN_S,
        # Renders run on through a broker outage: their result goes to the database, not the broker.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_default_queue": cel.queue,
        "task_ignore_result": True,  # results live in the database
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


def make_app(settings: Settings, worker_id: str | None = None) -> Any:
    """The Celery app with the render task; ``worker_id`` names the worker when it runs tasks."""
    from celery import Celery

    app = Celery("montage", set_as_current=False)
    app.conf.update(celery_config(settings))

    @app.task(name=TASK_NAME, bind=True)  # type: ignore[untyped-decorator]
    def render(task: Any, job_id: str, api_version: str | None = None) -> str:
        return run_task(task, settings, f"{worker_id or socket.gethostname()}-{os.getpid()}", job_id, api_version)

    return app


# --------------------------------------------------------------------------------------------- the task


_seen_versions: set[str] = set()


def _check_version(api_version: str | None) -> None:
    mine = code_version()
    if api_version and api_version != mine and api_version not in _seen_versions:
        _seen_versions.add(api_version)
        log.warning("code version mismatch: this worker runs %s, the API that published the task runs %s; "
                    "deploy the same code everywhere", mine, api_version)  # fmt: skip


def run_task(task: Any, settings: Settings, worker_id: str, job_id: str, api_version: str | None) -> str:
    """The body of ``montage.render``: what happened (succeeded, failed, lost, duplicate, gone, ...)."""
    _check_version(api_version)
    redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
    started = time.monotonic()
    outcome = asyncio.run(_handle(settings, worker_id, job_id, redelivered))
    task_metrics().observe(outcome, time.monotonic() - started)
    if outcome in ("not admitted", "paused"):
        from celery.exceptions import MaxRetriesExceededError

        try:
            raise task.retry(countdown=ADMISSION_RETRY_S, max_retries=ADMISSION_MAX_RETRIES)
        except MaxRetriesExceededError:
            log.warning("job %s: %s %d times; the relay publishes it again", job_id, outcome, ADMISSION_MAX_RETRIES)
    return outcome


async def _handle(settings: Settings, worker_id: str, job_id: str, redelivered: bool) -> str:
    from montage.db import jobs
    from montage.db.database import Database
    from montage.runtime.admission import Admission, Waiting
    from montage.workers.executor import executor_from_settings
    from montage.workers.worker import Worker, WorkerConfig, paused

    db = Database.from_settings(settings)
    try:
        async with db.session() as session:
            job = await jobs.get_job(session, job_id)
        if job is None:
            log.error("task for job %s: no such job in the database (deleted, or this worker uses another "
                      "database than the API: check db.url); task dropped", job_id)  # fmt: skip
            return "gone"
        if job.state != "queued" or redelivered:
            await jobs.record_event(db, job_id, REDELIVERED, worker=worker_id, state=job.state)
        if job.state != "queued":
            log.info("job %s is %s: this delivery is a duplicate; nothing to do", job_id, job.state)
            return "duplicate"
        if await paused(db, worker_id):  # WORKERS_PAUSED, as the local worker: back to the queue, unclaimed
            log.info("job %s: workers are paused (WORKERS_PAUSED); back to the queue", job_id)
            return "paused"
        # Memory admission (phase 6): the same formula and reservations as the local worker; a job that
        # does not fit goes back to the queue (task.retry) before it is claimed, so no attempt is used.
        admission = Admission.from_settings(settings) if settings.memory.admission else None
        if admission is None:
            lease = await jobs.claim(db, job_id, worker_id, settings.service.lease_s)
        else:
            got = await admission.claim(db, worker_id, settings.service.lease_s, job_id=job_id)
            if isinstance(got, Waiting):
                log.info("job %s: %s; back to the queue", job_id, got.status_text)
                return "not admitted"
            lease = got
        if lease is None:
            return "duplicate"  # another delivery of it won the claim
        if not Path(lease.input_path).is_file():
            return await _input_missing(db, lease, settings.service.max_attempts)
        worker = Worker(
            db, executor_from_settings(settings), WorkerConfig.from_settings(settings, worker_id), admission
        )
        try:
            return await worker.execute(lease)
        finally:  # job cgroups are per machine: a task is the only code a Celery worker runs there
            await worker.sweep_cgroups()  # best effort: never raises
    finally:
        await db.dispose()


async def _input_missing(db: Database, lease: Any, max_attempts: int) -> str:
    from montage.db import jobs

    reason = (
        f"input file {lease.input_path} does not exist on worker host {socket.gethostname()} "
        f"(attempt {lease.attempt} of {max_attempts}); every worker must see the media directory at the same path"
    )
    log.error("job %s: %s", lease.job_id, reason)
    if lease.attempt >= max_attempts:
        await jobs.finish(db, lease, succeeded=False, error=reason)
        return "failed"
    await jobs.release(db, lease, reason)  # another worker (machine) may see it; the relay publishes it again
    return "released"


# ------------------------------------------------------------------------------------------ the API side


class Dispatcher:
    """Publishes render tasks and reads the broker's side of /v1/admin/stats (no connection until used)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = broker_url(settings)
        self.app = make_app(settings)

    def _send(self, job_id: str, task_id: str) -> None:
        self.app.send_task(
            TASK_NAME,
            args=[job_id],
            kwargs={"api_version": code_version()},
            task_id=task_id,
            queue=self.settings.celery.queue,
            retry=True,  # once: a pooled connection may be stale after a broker restart
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        )

    async def dispatch(self, db: Database, job_id: str, kind: str = DISPATCHED) -> bool:
        """Publish a task for ``job_id``; False (logged) when the broker is unreachable: the relay retries."""
        from montage.db import jobs

        task_id = f"{job_id}-{len(await _task_ids(db, job_id)) + 1}"
        timeout = self.settings.celery.publish_timeout_s * 3
        try:
            await asyncio.wait_for(asyncio.to_thread(self._send, job_id, task_id), timeout=timeout)
        except Exception as exc:  # refused, DNS, auth, timeout: kombu and redis raise many kinds
            log.warning("job %s: could not publish to the broker %s (%s: %s); the relay publishes it again",
                        job_id, shown_url(self.url), type(exc).__name__, exc)  # fmt: skip
            with contextlib.suppress(Exception):
                await jobs.record_event(db, job_id, PUBLISH_FAILED, error=f"{type(exc).__name__}: {exc}")
            return False
        await jobs.record_event(db, job_id, kind, task_id=task_id)
        return True

    async def revoke(self, db: Database, job_id: str) -> None:
        """Revoke the job's tasks (queued ones are skipped); a running one loses its lease and stops."""
        ids = await _task_ids(db, job_id)
        if ids:
            try:
                await asyncio.wait_for(asyncio.to_thread(self.app.control.revoke, ids), timeout=5)
            except Exception as exc:  # the lease check stops the render anyway
                log.warning("job %s: revoke failed (%s); the worker's lease check stops it", job_id, exc)

    def _redis(self) -> Any:
        import redis

        timeout = self.settings.celery.publish_timeout_s
        return redis.Redis.from_url(self.url, socket_connect_timeout=timeout, socket_timeout=timeout)

    def broker_snapshot(self) -> dict[str, Any]:
        """Queue depth and registered workers (with their code version), or the broker's error."""
        mine = code_version()
        try:
            client = self._redis()
            try:
                depth = int(client.llen(self.settings.celery.queue))
                workers = []
                for key in sorted(client.scan_iter(match=REGISTRY_PREFIX + "*", count=100)):
                    raw = client.get(key)
                    if raw:
                        entry = json.loads(raw)
                        entry["version_matches"] = entry.get("version") == mine
                        workers.append(entry)
            finally:
                client.close()
        except Exception as exc:
            return {"broker_up": False, "broker_error": f"{type(exc).__name__}: {exc}", "api_version": mine}
        return {"broker_up": True, "queue_depth": depth, "workers": workers, "api_version": mine}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.app.close()


async def _task_ids(db: Database, job_id: str) -> list[str]:
    from sqlalchemy import select

    from montage.db.models import JobEvent

    async with db.session() as session:
        rows = await session.scalars(
            select(JobEvent.detail).where(JobEvent.job_id == job_id, JobEvent.kind.in_((DISPATCHED, RELAYED)))
        )
        return [str(d["task_id"]) for d in rows if d and "task_id" in d]


async def event_counts(db: Database) -> dict[str, int]:
    """How many tasks were dispatched, relayed, redelivered, and publishes that failed."""
    from sqlalchemy import func, select

    from montage.db.models import JobEvent

    kinds = (DISPATCHED, RELAYED, REDELIVERED, PUBLISH_FAILED)
    async with db.session() as session:
        rows = await session.execute(
            select(JobEvent.kind, func.count()).where(JobEvent.kind.in_(kinds)).group_by(JobEvent.kind)
        )
        counts = dict.fromkeys(kinds, 0)
        counts.update({kind: int(n) for kind, n in rows})
        return counts


# ---------------------------------------------------------------------------------------------- the relay


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


async def due_for_relay(db: Database, relay_after_s: float, grace_s: float) -> list[str]:
    """Queued jobs that need a (new) task; ``grace_s`` leaves a fresh submission to its own publish."""
    from sqlalchemy import and_, func, select

    from montage.db.models import Job, JobEvent, JobState, utcnow

    sent = JobEvent.kind.in_((DISPATCHED, RELAYED))
    back = JobEvent.kind.in_(GIVEN_BACK)
    stmt = (
        select(
            Job.id,
            Job.created_at,
            func.count(JobEvent.id).filter(sent),
            func.max(JobEvent.at).filter(sent),
            func.max(JobEvent.at).filter(back),
        )
        .outerjoin(JobEvent, and_(JobEvent.job_id == Job.id, sent | back))
        .where(Job.state == JobState.QUEUED.value)
        .group_by(Job.id, Job.created_at)
        .order_by(Job.created_at)
    )
    now = utcnow()
    due = []
    async with db.session() as session:
        for job_id, created_at, n_sent, sent_at, back_at in (await session.execute(stmt)).all():
            created, last_sent, last_back = _aware(created_at), _aware(sent_at), _aware(back_at)
            if last_sent is None:
                if created is not None and now - created >= timedelta(seconds=grace_s):
                    due.append(job_id)
            elif last_back is not None and last_back > last_sent:
                due.append(job_id)
            elif now - last_sent >= timedelta(seconds=relay_after_s * 2 ** min(max(n_sent - 1, 0), RELAY_BACKOFF_CAP)):
                due.append(job_id)
    return due


async def relay_once(db: Database, dispatcher: Dispatcher) -> list[str]:
    """Re-queue expired leases, remove the files of jobs past the retention period (the API's data
    directory is the one the workers write to), then publish every queued job that needs a task;
    returns those published."""
    from montage.db import jobs
    from montage.workers.worker import purge_expired

    settings = dispatcher.settings
    requeued = await jobs.requeue_expired(db, settings.service.max_attempts)
    if requeued:
        log.warning("relay: re-queued jobs whose lease expired (worker died?): %s", ", ".join(requeued))
    await purge_expired(db, Path(settings.data_dir), settings.service.retention_hours * 3600)
    published = []
    for job_id in await due_for_relay(db, settings.celery.relay_after_s, settings.celery.publish_timeout_s * 4):
        if not await dispatcher.dispatch(db, job_id, RELAYED):
            break  # the broker is down: try the rest on the next scan
        published.append(job_id)
    if published:
        log.info("relay: published %d job(s) again: %s", len(published), ", ".join(published))
    return published


async def run_relay(db: Database, dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    """:func:`relay_once` every ``celery.relay_interval_s`` until ``stop``; a database error waits a turn."""
    from montage.db.errors import describe

    interval = dispatcher.settings.celery.relay_interval_s
    while not stop.is_set():
        try:
            await relay_once(db, dispatcher)
        except Exception as exc:  # the database is down: jobs wait in it, nothing is lost
            log.warning("relay: scan failed, retrying in %.0f s: %s", interval, describe(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


# ------------------------------------------------------------------------------------------ the worker side


class TaskMetrics:
    """Per task: outcome counter and duration histogram (multiprocess files when a metrics port is set)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.tasks = Counter("montage_celery_tasks", "render tasks handled, by outcome", ["outcome"], registry=None)
        self.seconds = Histogram("montage_celery_task_seconds", "render task duration", registry=None,
                                 buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))  # fmt: skip

    def observe(self, outcome: str, seconds: float) -> None:
        self.tasks.labels(outcome=outcome).inc()
        self.seconds.observe(seconds)


@functools.cache
def task_metrics() -> TaskMetrics:
    return TaskMetrics()


def check_broker(url: str, timeout_s: float) -> None:
    """Raise :class:`Refused` naming the (masked) broker URL when it does not answer PING."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise Refused(
            f"the broker {shown_url(url)} (celery.broker_url) did not answer: {exc}. Start redis-server there, "
            "or point celery.broker_url at a reachable Redis."
        ) from None
    finally:
        client.close()


def is_registered(url: str, worker_id: str) -> bool:
    """Whether the worker ``worker_id`` is ready (its registry entry is in the broker)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.exists(REGISTRY_PREFIX + worker_id))
    except redis.RedisError:
        return False
    finally:
        client.close()


def _registry_loop(url: str, key: str, entry: dict[str, Any], stop: threading.Event) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        while not stop.is_set():
            with contextlib.suppress(redis.RedisError):
                client.set(key, json.dumps(entry), ex=REGISTRY_TTL_S)
            stop.wait(REGISTRY_EVERY_S)
        with contextlib.suppress(redis.RedisError):
            client.delete(key)
    finally:
        client.close()


def start_metrics_server(port: int, multiproc_dir: Path) -> None:
    """Serve the pool children's metrics (Prometheus multiprocess mode) on ``port`` from this process."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
    start_http_server(port, addr="0.0.0.0", registry=registry)


def run_worker(
    settings: Settings,
    worker_id: str,
    *,
    concurrency: int = 1,
    metrics_port: int | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Run a Celery worker in this process until SIGTERM (warm shutdown: the running task finishes)."""
    from celery import signals

    url = broker_url(settings)
    check_broker(url, settings.celery.publish_timeout_s)
    app = make_app(settings, worker_id)
    stop = threading.Event()
    entry = {
        "id": worker_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "version": code_version(),
        "concurrency": concurrency,
        "metrics_port": metrics_port,
    }

    def ready(**_: Any) -> None:
        threading.Thread(
            target=_registry_loop, args=(url, REGISTRY_PREFIX + worker_id, entry, stop), daemon=True
        ).start()
        log.info("celery worker %s ready: broker %s, queue %s, code version %s",
                 worker_id, shown_url(url), settings.celery.queue, code_version())  # fmt: skip
        if on_ready is not None:
            on_ready()

    signals.worker_ready.connect(ready, weak=False)
    argv = [
        "worker",
        f"--hostname={worker_id}@{socket.gethostname()}",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        f"--queues={settings.celery.queue}",
        f"--loglevel={settings.log_level}",
        "--without-gossip",
        "--without-mingle",
    ]
    try:
        app.worker_main(argv)
    finally:
        stop.set()
    return 0
