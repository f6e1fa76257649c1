"""Run uvicorn and the embedded worker processes; restart crashed workers; drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from montage.errors import ExitCode
from montage.settings import LoadedSettings

log = logging.getLogger("montage.serve")
PID_FILE = "serve-workers.json"
"""In ``data_dir``: this serve's pid and its workers' pids with their start times (see :func:`stop_stale`)."""


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): pid reuse breaks the match."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    if fields[:1] in ([b"Z"], [b"X"]):  # a zombie has exited: only its exit status waits for a reaper
        return None
    return int(fields[19]) if len(fields) > 19 else None


def _same_process(entry: object) -> int | None:
    """The pid of a recorded ``{"pid", "start"}`` entry if that very process is still alive."""
    if not isinstance(entry, dict) or not isinstance(entry.get("pid"), int):
        return None
    pid: int = entry["pid"]
    start = _start_ticks(pid)
    return pid if start is not None and start == entry.get("start") else None


def stop_stale(pid_file: Path, grace_s: float) -> list[int]:
    """Stop the workers a dead ``montage serve`` left behind (it was SIGKILLed); returns their pids.

    Workers die with their serve (PR_SET_PDEATHSIG), so this is the second line: a worker the
    signal missed would otherwise run beside the new serve's worker of the same id. Only processes
    recorded in ``pid_file`` with the same start time and a ``montage worker --id`` command line are
    touched, and none while the recorded serve is still alive (another serve on this data directory).
    """
    from montage.workers.worker import process_cmdline

    try:
        record = json.loads(pid_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(record, dict):
        return []
    serve = _same_process(record.get("serve"))
    if serve is not None and serve != os.getpid():
        log.warning("montage serve pid %d still runs on this data directory; its workers are left alone", serve)
        return []
    stale = []
    workers = record.get("workers")
    for name, entry in workers.items() if isinstance(workers, dict) else []:
        pid = _same_process(entry)
        if pid is not None and f"montage worker --id {name}" in process_cmdline(pid):
            log.warning("worker %s (pid %d) outlived the previous montage serve; stopping it", name, pid)
            os.kill(pid, signal.SIGTERM)
            stale.append(pid)
    deadline = time.monotonic() + grace_s
    for pid in stale:
        while _start_ticks(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if _start_ticks(pid) is not None:
            log.error("stale worker pid %d did not stop within %.0f s; killing it", pid, grace_s)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return stale


class WorkerPool:
    """``montage worker`` child processes, kept at ``size``; same environment, same settings."""

    def __init__(
        self, size: int, log_file: Path | None, pid_file: Path | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.size = size
        self.extra_args = extra_args
        self.log_file = log_file
        self.pid_file = pid_file
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts: dict[int, int] = {}
        self.not_before: dict[int, float] = {}
        self.stopping = False

    def _spawn(self, index: int) -> None:
        # The worker dies with this process (even on SIGKILL), so a restarted serve never finds two
        # workers under one id.  It stays in serve's process group: a terminal's Ctrl-C reaches both.
        from montage.core.proc import spawn

        argv = [sys.executable, "-m", "montage", "worker", "--id", f"embedded-{index}", *self.extra_args]
        if self.log_file is not None:
            argv += ["--log-file", str(self.log_file)]
        self.procs[index] = spawn(argv, pdeathsig=True, new_session=False)
        log.info("worker embedded-%d started (pid %d)", index, self.procs[index].pid)
        self._record()

    def _record(self) -> None:
        if self.pid_file is None:
            return
        from montage.core.files import atomic_write_text

        me = {"pid": os.getpid(), "start": _start_ticks(os.getpid())}
        workers = {f"embedded-{i}": {"pid": p.pid, "start": _start_ticks(p.pid)} for i, p in self.procs.items()}
        with contextlib.suppress(OSError):  # bookkeeping for the next start; never a reason to fail
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.pid_file, json.dumps({"serve": me, "workers": workers}, indent=2) + "\n")

    def start(self) -> None:
        for index in range(self.size):
            self._spawn(index)

    async def watch(self) -> None:
        while not self.stopping:
            for index, proc in list(self.procs.items()):
                rc = proc.poll()
                if rc is None or self.stopping:
                    continue
                if index not in self.not_before:
                    # Back off (1, 2, 4 ... 60 s) so a worker that cannot start does not spin.
                    n = self.restarts.get(index, 0)
                    self.not_before[index] = time.monotonic() + min(60.0, 2.0**n)
                    log.error("worker embedded-%d (pid %d) exited with %s; restarting it in %.0f s",
                              index, proc.pid, rc, min(60.0, 2.0**n))  # fmt: skip
                elif time.monotonic() >= self.not_before[index]:
                    del self.not_before[index]
                    self.restarts[index] = self.restarts.get(index, 0) + 1
                    self._spawn(index)
            await asyncio.sleep(1.0)

    def stop(self, grace_s: float) -> None:
        """SIGTERM every worker (they drain), wait ``grace_s`` plus a margin, then SIGKILL stragglers."""
        self.stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s + 15
        for index, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker embedded-%d did not drain in time; killing it", index)
                proc.kill()
            finally:
                proc.wait()
            log.info("worker embedded-%d exited with %s", index, proc.returncode)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)


async def _smoke_probe(server: Any, host: str) -> int:
    """Wait for start-up, ask /v1/public/ready over HTTP, then stop the server; returns the status."""
    import httpx

    while not server.started:
        if server.should_exit:
            return 0
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.get(f"http://{host}:{port}/v1/public/ready")
        log.info("smoke: GET /v1/public/ready -> %d %s", resp.status_code, resp.text)
        return resp.status_code
    except httpx.HTTPError as exc:
        log.error("smoke: /v1/public/ready failed: %s", exc)
        return 0
    finally:
        server.should_exit = True


def serve_forever(loaded: LoadedSettings, *, smoke: bool = False, app: Any = None) -> int:
    """Serve until SIGTERM/SIGINT; with ``smoke``, stop after one readiness probe (exit 0 if ready).

    ``app`` defaults to the merged app; split mode passes its public app (montage/service/split.py).
    """
    import uvicorn

    from montage.service.app import create_app
    from montage.service.timeouts import timed_protocol

    settings = loaded.settings
    svc = settings.service
    app = create_app(loaded) if app is None else app
    config = uvicorn.Config(
        app,
        host=svc.host,
        port=svc.port,
        loop="auto",
        log_config=None,
        timeout_graceful_shutdown=int(svc.drain_grace_s) or None,
        http=timed_protocol(svc.read_timeout_s),  # h11 plus a bound on a stalled request head
    )
    server = uvicorn.Server(config)
    pid_file = Path(settings.data_dir) / PID_FILE
    stop_stale(pid_file, svc.drain_grace_s + 5)
    if svc.engine == "celery":  # the broker's workers render; embedded ones only when asked
        pool = WorkerPool(settings.celery.embedded_workers, svc.log_file, pid_file, ("--engine", "celery"))
    else:
        pool = WorkerPool(svc.workers, svc.log_file, pid_file)
    received: list[int] = []

    def remember(sig: int, _frame: Any) -> None:
        # uvicorn restores this handler after its graceful shutdown and re-raises the signal into it.
        received.append(sig)

    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGTERM, signal.SIGINT)}

    smoke_status: list[int] = []

    async def main() -> None:
        from montage.runtime.reaper import reaping

        async with reaping(settings.ops.flags_file):  # subreaper: orphans of crashed renderers are collected
            await serve_and_watch()

    async def serve_and_watch() -> None:
        pool.start()
        watcher = asyncio.create_task(pool.watch())
        probe = asyncio.create_task(_smoke_probe(server, svc.host)) if smoke else None
        try:
            await server.serve()
            if probe is not None:
                smoke_status.append(await probe)
        finally:
            pool.stopping = True
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    try:
        asyncio.run(main())
    finally:
        log.info("API stopped; draining %d worker(s) (grace %.0f s)", len(pool.procs), svc.drain_grace_s)
        pool.stop(svc.drain_grace_s)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        log.error("the API did not start (see above); is %s:%d free?", svc.host, svc.port)
        return ExitCode.FAIL
    log.info("stopped cleanly%s", f" after signal {received[0]}" if received else "")
    if smoke and smoke_status != [200]:
        log.error("smoke: the service was not ready (status %s)", smoke_status or "none")
        return ExitCode.FAIL
    return ExitCode.OK
