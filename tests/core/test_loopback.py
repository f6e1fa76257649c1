"""montage.core.loopback with a real HTTP server process."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from montage.core import loopback

SERVER = "import http.server, sys; http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port=int(sys.argv[1]), bind='127.0.0.1')"  # noqa: E501


def test_free_port_is_bindable() -> None:
    port = loopback.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_serve_wait_and_stop(tmp_path: Path) -> None:
    (tmp_path / "ready").write_text("ok")
    port = loopback.free_port()
    with loopback.start(["{python}", "-c", SERVER, str(port)], port=port, ready_path="/ready",
                        log=tmp_path / "server.log", cwd=tmp_path, timeout_s=30, grace_s=5) as server:  # fmt: skip
        assert loopback.answers(f"{server.base}/ready")
        proc = server.proc
    assert proc.poll() is not None and not loopback.answers(f"{server.base}/ready", timeout_s=1)


def test_a_server_that_exits_is_not_ready(tmp_path: Path) -> None:
    port = loopback.free_port()
    with pytest.raises(loopback.NotReady, match=r"(?s)exited with 3.*boom"):
        loopback.start(["{python}", "-c", "import sys; print('boom'); sys.exit(3)"], port=port, ready_path="/",
                       log=tmp_path / "server.log", timeout_s=30)  # fmt: skip
