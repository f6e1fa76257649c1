"""Run uvicorn and the embedded worker processes; restart crashed workers; drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from montage.errors import ExitCode
from montage.settings import LoadedSettings

log = logging.getLogger("montage.serve")


class WorkerPool:
    """``montage worker`` child processes, kept at ``size``; same environment, same settings."""

    def __init__(self, size: int, log_file: Path | None) -> None:
        self.size = size
        self.log_file = log_file
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts: dict[int, int] = {}
        self.not_before: dict[int, float] = {}
        self.stopping = False

    def _spawn(self, index: int) -> None:
        argv = [sys.executable, "-m", "montage", "worker", "--id", f"embedded-{index}"]
        if self.log_file is not None:
            argv += ["--log-file", str(self.log_file)]
        self.procs[index] = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        log.info("worker embedded-%d started (pid %d)", index, self.procs[index].pid)

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
    )
    server = uvicorn.Server(config)
    pool = WorkerPool(svc.workers, svc.log_file)
    received: list[int] = []

    def remember(sig: int, _frame: Any) -> None:
        # uvicorn restores this handler after its graceful shutdown and re-raises the signal into it.
        received.append(sig)

    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGTERM, signal.SIGINT)}

    smoke_status: list[int] = []

    async def main() -> None:
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
