"""Servers on loopback: a free port, start a server process and wait until it answers, stop it.

Stdlib only (``urllib``), so the toolkit's canary and the app's load test share it without pulling
an HTTP client into ``montage.core``.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from montage.core import proc
from montage.errors import MontageError

HOST = "127.0.0.1"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy


class NotReady(MontageError):
    """The server exited or did not answer its readiness URL in time; the message has its log tail."""


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """Whether ``url`` answers HTTP 200."""
    try:
        with _OPENER.open(url, timeout=timeout_s) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Server:
    """A started server: its base URL, port, process and log.

    Also a context manager (``with start(...) as server:``) that stops it on every exit path.
    """

    base: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    grace_s: float = 30.0
    returncode: int | None = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(self.grace_s)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 30.0) -> int:
        """SIGTERM the server's process group, SIGKILL after ``grace_s``; always waits."""
        if self.returncode is None:
            self.returncode = proc.stop(self.proc, grace_s)
        return self.returncode


def start(
    argv: Sequence[str],
    *,
    port: int,
    ready_path: str,
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    unset_prefixes: Sequence[str] = (),
    timeout_s: float = 60.0,
    grace_s: float = 30.0,
    name: str = "server",
) -> Server:
    """Start ``argv`` (which must listen on ``port``) and wait until ``ready_path`` answers 200.

    Raises :class:`NotReady` (after stopping it) when the server exits or ``timeout_s`` passes first.
    ``grace_s`` is how long leaving ``with`` gives it between SIGTERM and SIGKILL.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as fh:
        child = proc.spawn(argv, cwd=cwd, env=env, unset_prefixes=unset_prefixes, stdout=fh, stderr=subprocess.STDOUT)
    server = Server(base=f"http://{HOST}:{port}", port=port, proc=child, log=log, grace_s=grace_s)
    try:
        deadline = time.monotonic() + timeout_s
        while not answers(server.base + ready_path):
            if child.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {child.returncode}" if child.poll() is not None else f"not ready in {timeout_s:g} s"
                raise NotReady(f"{name} ({' '.join(argv[:4])} ...) {why}; log {log} ends:\n{server.tail()}")
            time.sleep(0.2)
    except BaseException:
        server.stop(grace_s=5.0)
        raise
    return server
