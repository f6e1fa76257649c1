"""Split mode: the public and the admin routers as two ASGI apps, each in its own process and port.

Phase 4's rollback ("keep the separate ASGI apps").  ``montage serve`` runs the merged app unless
an admin port is configured: the setting ``service.split_admin_port``
(``MONTAGE_SERVICE__SPLIT_ADMIN_PORT``), else the ``API_SPLIT_ADMIN_PORT`` flag in the flags file,
which is what ``phase.rollback 4`` sets.  In split mode the ``montage serve`` process serves
``/v1/public/*`` (plus its workers, drain and smoke probe, as before) on ``service.port``, and a
child process (``python -m montage.service.split``) serves ``/v1/admin/*`` on the admin port.  Each
app has its own ``/metrics``; neither answers the other's routes (404).
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

from montage.errors import ExitCode
from montage.settings import LoadedSettings

log = logging.getLogger("montage.serve")
FLAG = "API_SPLIT_ADMIN_PORT"
READY_TIMEOUT_S = 60.0


def admin_port(loaded: LoadedSettings) -> int | None:
    """The split mode's admin port, or None for the merged app (setting first, then the flag)."""
    configured = loaded.settings.service.split_admin_port
    if configured is not None:
        return configured
    from montage.core.flags import file_port

    return file_port(loaded.settings.ops.flags_file, FLAG)


def _wait_admin(proc: subprocess.Popen[bytes], url: str) -> bool:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s + 15)
    except subprocess.TimeoutExpired:
        log.error("the admin app (pid %d) did not stop in time; killing it", proc.pid)
        proc.kill()
    finally:
        proc.wait()
    (log.info if proc.returncode == 0 else log.warning)("admin app (pid %d) exited with %s", proc.pid, proc.returncode)


def serve_split(loaded: LoadedSettings, port: int, *, smoke: bool = False) -> int:
    """Start the admin app's process, then serve the public app here until SIGTERM; stop both."""
    from montage.core.loopback import free_port
    from montage.service.app import create_app
    from montage.service.supervisor import serve_forever

    svc = loaded.settings.service
    port = port or free_port()
    argv = [sys.executable, "-m", "montage.service.split", "--host", svc.host, "--port", str(port)]
    if svc.log_file is not None:
        argv += ["--log-file", str(svc.log_file)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        if not _wait_admin(proc, f"http://{svc.host}:{port}/metrics"):
            log.error(
                "split mode: the admin app did not start on %s:%d (exit %s); is the port free?",
                svc.host,
                port,
                proc.poll(),
            )
            return ExitCode.FAIL
        log.info(
            "split mode: /v1/admin/* on http://%s:%d (pid %d), /v1/public/* on port %d",
            svc.host,
            port,
            proc.pid,
            svc.port,
        )
        return serve_forever(loaded, smoke=smoke, app=create_app(loaded, routers=("public",)))
    finally:
        _stop(proc, svc.drain_grace_s)


def _admin_main(argv: list[str] | None = None) -> int:
    """The admin app's process: settings from the same environment, host and port from the parent."""
    import uvicorn

    from montage.errors import run_reporting
    from montage.service.app import create_app
    from montage.service.logs import setup_logging
    from montage.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m montage.service.split")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-file", type=Path, default=None)
    args = parser.parse_args(argv)

    def go() -> int:
        loaded = load_settings(overrides={"service": {"host": args.host, "port": args.port}})
        setup_logging(loaded, args.log_file)
        app = create_app(loaded, routers=("admin",))
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_config=None,
            timeout_graceful_shutdown=int(loaded.settings.service.drain_grace_s) or None,
        )
        server = uvicorn.Server(config)
        # uvicorn re-raises SIGTERM into the previous handler after its graceful shutdown: make that a no-op
        # so a drained admin app exits 0 instead of dying by the signal.
        previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
        try:
            server.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return ExitCode.OK if server.started else ExitCode.FAIL

    return run_reporting("montage admin app", go)


if __name__ == "__main__":
    sys.exit(_admin_main())
