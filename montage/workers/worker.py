"""The worker loop: claim a job with a lease, run its executor in a child process group, keep the
lease alive, and record the outcome only while the lease is still ours.

* heartbeat lost (lease expired and re-queued, or the job was cancelled): kill the child's process
  group, write nothing;
* job timeout: kill the group, fail the job;
* SIGTERM/SIGINT: stop claiming; a running job may finish within ``drain_grace_s``, after that the
  group is killed and the job released back to the queue;
* output is written into a per-attempt scratch directory and renamed into place only after the
  lease check, so a job has at most one result however many workers tried it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import socket
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from montage.core.cgroupfs import MemoryCounters
from montage.core.files import atomic_write_text
from montage.core.proc import set_pdeathsig
from montage.db import flagstore, jobs
from montage.db.database import Database
from montage.db.models import utcnow
from montage.errors import MontageError
from montage.runtime.admission import Admission, Waiting
from montage.runtime.jobcgroup import JobCgroup, JobCgroups, oom_message
from montage.runtime.memory_manager import MemoryReadError
from montage.workers.executor import Executor, JobSpec

if TYPE_CHECKING:
    from montage.settings import Settings

log = logging.getLogger("montage.worker")
STDERR_TAIL = 4000
MIB = 1024 * 1024
RESULT_NAME = "montage.mp4"
PLAN_NAME = "plan.json"
MEMORY_NAME = "memory.json"  # the job cgroup's counters of the last attempt
JOB_LIMIT_FACTOR = 2


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str
    data_dir: Path
    lease_s: float
    heartbeat_s: float
    poll_s: float
    job_timeout_s: float
    drain_grace_s: float
    max_attempts: int
    retention_s: float
    maintenance_s: float = 5.0
    job_memory_limit_mb: int | None = None  # per-job cgroup limit; None: no job cgroups

    @classmethod
    def from_settings(cls, settings: Settings, worker_id: str | None = None) -> WorkerConfig:
        svc = settings.service
        return cls(
            worker_id=worker_id or f"{socket.gethostname()}-{os.getpid()}",
            data_dir=Path(settings.data_dir),
            lease_s=svc.lease_s,
            heartbeat_s=min(svc.heartbeat_s, svc.lease_s / 3),
            poll_s=svc.poll_s,
            job_timeout_s=svc.job_timeout_s,
            drain_grace_s=svc.drain_grace_s,
            max_attempts=svc.max_attempts,
            retention_s=svc.retention_hours * 3600,
            job_memory_limit_mb=job_limit_mb(settings),
        )


async def purge_expired(db: Database, data_dir: Path, retention_s: float) -> int:
    """Remove the uploads and results of jobs that finished more than ``retention_s`` ago and mark them
    purged (their result then answers 410); returns how many.  Run by every local worker's maintenance
    and, with the celery engine, by the API's relay (which sees the same data directory)."""

    def remove(job_id: str, uploaded: bool) -> None:
        shutil.rmtree(data_dir / "results" / job_id, ignore_errors=True)
        if uploaded:
            shutil.rmtree(data_dir / "uploads" / job_id, ignore_errors=True)

    cutoff = utcnow() - timedelta(seconds=retention_s)
    async with db.begin() as session:
        old = await jobs.purgeable(session, cutoff)
        for job in old:  # in a thread: the relay shares the API's event loop
            await asyncio.to_thread(remove, job.id, bool(job.uploaded))
        await jobs.mark_purged(session, [j.id for j in old])
    if old:
        log.info("retention: removed files of %d job(s)", len(old))
    return len(old)


def job_limit_mb(settings: Settings) -> int:
    """The per-job cgroup limit: twice ``memory.job_estimate_mb`` (a render may exceed its estimate)."""
    return int(settings.memory.job_estimate_mb) * JOB_LIMIT_FACTOR


def _child_setup(cgroup: JobCgroup) -> None:  # pragma: no cover - runs in the child between fork and exec
    set_pdeathsig()
    cgroup.preexec()


def process_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _group_members(pgid: int) -> list[int]:
    """Pids whose process group is ``pgid`` (Linux /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == pgid:
                    members.append(int(entry))
    return members


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the child's whole process group (the renderer and anything it started)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


class Worker:
    def __init__(
        self, db: Database, executor: Executor, config: WorkerConfig, admission: Admission | None = None
    ) -> None:
        """``admission`` (montage/runtime/admission.py) decides whether the next job fits in memory;
        None claims without it (the stress check's negative control, unit tests of the lease logic)."""
        self.db = db
        self.executor = executor
        self.config = config
        self.admission = admission
        self.draining = asyncio.Event()
        self._last_maintenance = 0.0
        limit = config.job_memory_limit_mb
        self.cgroups = JobCgroups.detect() if limit else JobCgroups(None, "per-job memory limit not configured")

    def request_drain(self) -> None:
        if not self.draining.is_set():
            log.info("worker %s: draining (no new jobs)", self.config.worker_id)
        self.draining.set()

    async def run(self, *, once: bool = False) -> int:
        """Work until drained (or, with ``once``, until the queue is empty); returns jobs handled."""
        from sqlalchemy.exc import SQLAlchemyError

        if self.admission is not None:  # its budget row is written by every claim
            memory = self.admission.memory
            log.info("worker %s: memory admission on (memory.reserve_mb %d, default estimate %d MB)",
                     self.config.worker_id, memory.reserve_mb, memory.job_estimate_mb)  # fmt: skip
        try:
            return await self._loop(once)
        finally:
            if self.admission is not None:
                with contextlib.suppress(SQLAlchemyError, ConnectionError, TimeoutError):
                    await self.admission.unregister(self.db, self.config.worker_id)

    async def _claim(self) -> jobs.Lease | Waiting | None:
        if self.admission is None:
            return await jobs.claim_next(self.db, self.config.worker_id, self.config.lease_s)
        try:
            return await self.admission.claim(self.db, self.config.worker_id, self.config.lease_s)
        except MemoryReadError as exc:  # cannot tell what fits: claim nothing until the cgroup files read again
            log.error("worker %s: memory admission cannot read the memory limit, not claiming: %s",
                      self.config.worker_id, exc)  # fmt: skip
            return None

    async def _loop(self, once: bool) -> int:
        from sqlalchemy.exc import SQLAlchemyError

        from montage.db.errors import describe

        handled = 0
        while not self.draining.is_set():
            try:
                await self.maintenance()
                if await self._paused():
                    if once:
                        break
                    await self._idle()
                    continue
                lease = await self._claim()
                if isinstance(lease, Waiting):  # stays queued, no attempt used; runs when memory is freed
                    if once and lease.running_here == 0:
                        log.error("worker %s: job %s %s and nothing is running here to free memory",
                                  self.config.worker_id, lease.job_id, lease.status_text)  # fmt: skip
                        break
                    await self._idle()
                    continue
                if lease is None:
                    if once:
                        break
                    await self._idle()
                    continue
                await self.execute(lease)
                handled += 1
            except (SQLAlchemyError, ConnectionError, TimeoutError) as exc:
                # The database is down: a held lease simply expires and is re-queued by whoever comes back.
                log.warning("worker %s: database error, retrying: %s", self.config.worker_id, describe(exc))
                await self._idle()
        return handled

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.draining.wait(), timeout=self.config.poll_s)

    async def _paused(self) -> bool:
        return await paused(self.db, self.config.worker_id)

    async def maintenance(self, *, force: bool = False) -> None:
        """Re-queue jobs whose lease expired; remove files of jobs past the retention period and the
        cgroups that dead workers left."""
        now = time.monotonic()
        if not force and now - self._last_maintenance < self.config.maintenance_s:
            return
        self._last_maintenance = now
        requeued = await jobs.requeue_expired(self.db, self.config.max_attempts)
        if requeued:
            log.warning("re-queued jobs whose lease expired: %s", ", ".join(requeued))
        await purge_expired(self.db, self.config.data_dir, self.config.retention_s)
        await self.sweep_cgroups()

    async def sweep_cgroups(self) -> None:
        """Remove the empty job cgroups that a worker killed mid-render (SIGKILL, the OOM killer) left
        under this parent: its own ``close`` never ran, and a re-claim only reuses the name on the same
        machine.  Best effort (a failure is logged, never raised), and conservative, because the parent
        cgroup is shared by whatever runs under it (a canary's two sides, two deployments on a host):
        only a cgroup whose job is in *this* database and finished, that is older than a lease, and that
        holds no process is removed (``rmdir_if_empty`` kills nothing); another deployment's job ids are
        unknown here and are left alone."""
        from montage.core import cgroupfs

        try:
            found = self.cgroups.job_cgroups()
            if not found:
                return
            finished = await jobs.finished_among(self.db, sorted(found))
            removed = []
            for job_id in sorted(finished):
                cgroup = found[job_id]
                if time.time() - cgroup.path.stat().st_ctime < self.config.lease_s:
                    continue  # a retried job's fresh cgroup, about to be joined by its renderer
                if cgroupfs.rmdir_if_empty(cgroup):
                    removed.append(job_id)
        except Exception as exc:  # the database or the cgroup tree: try again at the next maintenance
            log.warning("job cgroup sweep skipped: %s", exc)
            return
        if removed:
            log.warning("removed the empty cgroups of finished jobs (their worker died): %s", ", ".join(removed))

    def _spec(self, lease: jobs.Lease) -> JobSpec:
        # Each attempt renders into its own scratch directory: whatever the renderer writes there
        # (partial files, sidecars) is either published or removed with the directory.
        scratch = self.config.data_dir / "results" / lease.job_id / f".attempt-{lease.attempt}-{lease.token[:8]}"
        scratch.mkdir(parents=True, exist_ok=True)
        return JobSpec(
            job_id=lease.job_id,
            input_path=Path(lease.input_path),
            duration_s=lease.duration_s,
            aspect=lease.aspect,
            output_tmp=scratch / RESULT_NAME,
            plan_path=scratch / PLAN_NAME,
        )

    async def execute(self, lease: jobs.Lease) -> str:
        """Run one claimed job; returns what happened (succeeded, failed, lost, released)."""
        spec = self._spec(lease)
        if lease.attempt > 1:
            await self._kill_orphans(lease)
        argv = self.executor.argv(spec)
        log.info("job %s attempt %d: %s", lease.job_id, lease.attempt, " ".join(argv))
        limit_mb = self.config.job_memory_limit_mb
        cgroup = self.cgroups.create(lease.job_id, limit_mb * MIB) if limit_mb else None
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: one killpg stops everything it started
                preexec_fn=set_pdeathsig if cgroup is None else functools.partial(_child_setup, cgroup),
            )
        except BaseException:
            if cgroup is not None:
                cgroup.close()
            raise
        await jobs.record_event(self.db, lease.job_id, "spawned", host=socket.gethostname(), pgid=proc.pid,
                                attempt=lease.attempt)  # fmt: skip
        talk = asyncio.ensure_future(proc.communicate())
        drain_deadline: float | None = None
        try:
            while True:
                done, _ = await asyncio.wait({talk}, timeout=self.config.heartbeat_s)
                if done:
                    break
                if not await jobs.heartbeat(self.db, lease, self.config.lease_s):
                    log.warning("job %s: lease lost (expired or cancelled); killing the renderer", lease.job_id)
                    kill_group(proc)
                    return "lost"
                if time.monotonic() - started > self.config.job_timeout_s:
                    kill_group(proc)
                    await jobs.finish(
                        self.db, lease, succeeded=False, error=f"timed out after {self.config.job_timeout_s:g} s"
                    )
                    return "failed"
                if self.draining.is_set():
                    drain_deadline = drain_deadline or time.monotonic() + self.config.drain_grace_s
                    if time.monotonic() > drain_deadline:
                        kill_group(proc)
                        await jobs.release(self.db, lease, "worker drained past its grace period")
                        return "released"
            stdout, stderr = talk.result()
            # the counters are read now, while the job is still running: once it is finished a sibling
            # worker's sweep may remove the (empty) cgroup before this one closes it
            counters = self._memory_record(spec, cgroup)
            oom = oom_message(counters) if counters is not None and counters.oom_kills else None
            if oom is not None and proc.returncode != 0:
                await jobs.finish(self.db, lease, succeeded=False, error=oom)
                return "failed"
            outcome = await self._record(lease, spec, proc.returncode, stdout, stderr)
            await self._record_peak(lease, counters, outcome)
            return outcome
        finally:
            kill_group(proc)
            if not talk.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(talk, timeout=10)
            if proc.returncode is None:
                await proc.wait()
            if cgroup is not None:
                cgroup.close()
            shutil.rmtree(spec.output_tmp.parent, ignore_errors=True)

    def _memory_record(self, spec: JobSpec, cgroup: JobCgroup | None) -> MemoryCounters | None:
        """Write the job cgroup's counters next to the result and return them (None without a cgroup)."""
        if cgroup is None:
            return None
        counters = cgroup.counters()
        record = {"cgroup": cgroup.cgroup.label, **asdict(counters)}
        atomic_write_text(spec.output_tmp.parent.parent / MEMORY_NAME, json.dumps(record, indent=2, sort_keys=True))
        return counters

    async def _record_peak(self, lease: jobs.Lease, counters: MemoryCounters | None, outcome: str) -> None:
        """A succeeded job's peak (its cgroup's counter) refines the estimates of later jobs like it."""
        if self.admission is None or counters is None or outcome != "succeeded":
            return
        peak = counters.peak_bytes
        if peak:
            plan = self.config.data_dir / "results" / lease.job_id / PLAN_NAME
            await self.admission.record_peak(self.db, lease.job_id, peak, plan)

    async def _kill_orphans(self, lease: jobs.Lease) -> None:
        """Kill renderers of earlier attempts of this job left behind on this host by a worker that died.

        PR_SET_PDEATHSIG only reaches the direct child; its own children (ffmpeg) would render on
        for nobody.  A process group is killed only if its leader's command line names this job, so
        a recycled pid is never hit.
        """
        host = socket.gethostname()
        for spawned in await jobs.spawned_groups(self.db, lease.job_id):
            pgid = spawned.get("pgid")
            if spawned.get("host") != host or not isinstance(pgid, int):
                continue
            for pid in _group_members(pgid):
                if lease.job_id in process_cmdline(pid):
                    log.warning("job %s: killing process group %d left by an earlier attempt", lease.job_id, pgid)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pgid, signal.SIGKILL)
                    break

    async def _record(self, lease: jobs.Lease, spec: JobSpec, rc: int | None, out: bytes, err: bytes) -> str:
        tail = err.decode("utf-8", "replace")[-STDERR_TAIL:].strip()
        if rc != 0:
            await jobs.finish(self.db, lease, succeeded=False, error=f"renderer exited {rc}: {tail or '(no stderr)'}")
            return "failed"
        try:
            self.executor.collect(spec, out.decode("utf-8", "replace"))
        except MontageError as exc:
            await jobs.finish(self.db, lease, succeeded=False, error=str(exc))
            return "failed"
        scratch = spec.output_tmp.parent
        out_dir = scratch.parent
        final, plan = out_dir / RESULT_NAME, out_dir / PLAN_NAME
        # Still ours? Only then publish; the DB update below is the authority.
        if not await jobs.heartbeat(self.db, lease, self.config.lease_s):
            return "lost"
        os.replace(spec.output_tmp, final)
        os.replace(spec.plan_path, plan)
        stem = spec.output_tmp.stem
        for sidecar in scratch.glob(f"{stem}.*"):  # timelines (EDL, OTIO) written next to the output
            os.replace(sidecar, out_dir / sidecar.name)
        for stale in out_dir.glob(".attempt-*"):  # this attempt's scratch, and that of attempts whose worker died
            shutil.rmtree(stale, ignore_errors=True)
        if not await jobs.finish(self.db, lease, succeeded=True, result_path=str(final), plan_path=str(plan)):
            return "lost"
        log.info("job %s succeeded: %s", lease.job_id, final)
        return "succeeded"


def install_drain_handlers(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_drain)


async def paused(db: Database, worker_id: str) -> bool:
    """The ``WORKERS_PAUSED`` flag from the database: every engine's worker checks it before it claims."""
    from montage.core.flags import FlagError, enabled

    async with db.session() as session:
        flags = await flagstore.get_flags(session)
    try:
        return enabled(flags, "WORKERS_PAUSED", "database flags table")
    except FlagError as exc:  # unreadable pause switch: claim nothing until an operator fixes it
        log.error("worker %s: %s; not claiming jobs", worker_id, exc)
        return True
