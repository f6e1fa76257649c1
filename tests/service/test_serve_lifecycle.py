"""`montage serve` with real processes: workers die with it, a restart stops stale ones, the log keeps every line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from montage.service.supervisor import PID_FILE, _start_ticks
from montage.workers.worker import process_cmdline
from tests.service.conftest import service_env, wait_for

pytestmark = pytest.mark.slow
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+\[\d+\]: ")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(
    tmp_path: Path, env: dict[str, str], port: int, *extra: str, out: str = "serve.out"
) -> subprocess.Popen[bytes]:
    fh = (tmp_path / out).open("ab")
    argv = [sys.executable, "-m", "montage", "serve", "--port", str(port), *extra]
    return subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=fh, stderr=fh)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v1/public/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _our_workers(tmp_path: Path, worker_id: str | None = None) -> list[int]:
    """`montage worker` processes started in this test's directory (other tests on the machine have their own)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        cmd = process_cmdline(pid)
        if "montage worker --id" not in cmd or (worker_id and f"--id {worker_id}" not in cmd):
            continue
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")) == tmp_path:
                found.append(pid)
        except OSError:
            continue
    return found


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    try:
        if proc.poll() is None:
            proc.send_signal(sig)
        return proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_sigkill_of_serve_takes_its_workers_and_a_restart_runs_one_worker_per_id(
    tmp_path: Path, sqlite_db_url: str
) -> None:
    env = service_env(tmp_path, sqlite_db_url, workers="2", drain_grace_s="5")
    port = _port()
    first = _serve(tmp_path, env, port)
    try:
        wait_for(lambda: _ready(port), 60, "montage serve to be ready")
        workers = wait_for(lambda: len(w := _our_workers(tmp_path)) == 2 and w, 30, "two embedded workers")
        first.kill()
        first.wait()
        # PR_SET_PDEATHSIG: the workers go with their serve instead of running unmanaged.
        wait_for(lambda: not any(_start_ticks(p) for p in workers), 30, "the orphaned workers to die")
        second = _serve(tmp_path, env, port)
        try:
            wait_for(lambda: _ready(port), 60, "the restarted serve to be ready")
            for wid in ("embedded-0", "embedded-1"):
                assert len(wait_for(lambda w=wid: _our_workers(tmp_path, w), 30, wid)) == 1
            assert _stop(second) == 0
        finally:
            if second.poll() is None:
                second.kill()
    finally:
        if first.poll() is None:
            first.kill()
        _kill_all(_our_workers(tmp_path))
    assert not (tmp_path / "data" / PID_FILE).exists()  # a clean stop leaves no record behind


def test_restarted_serve_stops_a_worker_that_outlived_the_previous_serve(tmp_path: Path, sqlite_db_url: str) -> None:
    env = service_env(tmp_path, sqlite_db_url, workers="1", drain_grace_s="5")
    log = (tmp_path / "orphan.log").open("wb")
    # A worker whose serve died without taking it along (started here by hand, so no PDEATHSIG).
    orphan = subprocess.Popen(
        [sys.executable, "-m", "montage", "worker", "--id", "embedded-0"], env=env, cwd=tmp_path, stdout=log, stderr=log
    )
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "data").mkdir(exist_ok=True)
    record = {
        "serve": {"pid": dead.pid, "start": 1},
        "workers": {"embedded-0": {"pid": orphan.pid, "start": wait_for(lambda: _start_ticks(orphan.pid), 10, "pid")}},
    }
    (tmp_path / "data" / PID_FILE).write_text(json.dumps(record))
    port = _port()
    serve = _serve(tmp_path, env, port)
    try:
        wait_for(lambda: _ready(port), 60, "montage serve to be ready")
        assert orphan.wait(timeout=30) is not None
        assert len(wait_for(lambda: _our_workers(tmp_path, "embedded-0"), 30, "the new worker")) == 1
        assert _stop(serve) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
        if orphan.poll() is None:
            orphan.kill()
        _kill_all(_our_workers(tmp_path))
    assert "outlived the previous montage serve" in (tmp_path / "serve.out").read_text()


def test_log_file_keeps_every_worker_line(tmp_path: Path, sqlite_db_url: str, clip: Path) -> None:
    env = service_env(tmp_path, sqlite_db_url, workers="2", drain_grace_s="10")
    (tmp_path / "media").mkdir(exist_ok=True)
    (tmp_path / "media" / "clip.mp4").write_bytes(clip.read_bytes())
    log_file = tmp_path / "serve.log"
    log_file.write_text("a previous run's line\n")
    port = _port()
    serve = _serve(tmp_path, env, port, "--log-file", str(log_file))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(port), 60, "montage serve to be ready")
        ids = []
        for _ in range(4):
            resp = httpx.post(f"{base}/v1/public/jobs", json={"path": "clip.mp4", "duration": 2})
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        states = {"succeeded", "failed"}
        for job_id in ids:
            wait_for(lambda j=job_id: httpx.get(f"{base}/v1/public/jobs/{j}").json()["state"] in states, 120, job_id)
        assert _stop(serve) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
        _kill_all(_our_workers(tmp_path))
    # Every process also logs to stderr (one shared descriptor, so nothing is lost there): the log file
    # must hold each of those lines too, the workers' included.
    emitted = Counter(line for line in (tmp_path / "serve.out").read_text().splitlines() if LOG_LINE.match(line))
    kept = Counter(log_file.read_text().splitlines())
    worker_lines = [line for line in emitted if " montage.worker[" in line]
    assert len(worker_lines) >= 4, worker_lines
    missing = emitted - kept
    assert not missing, f"{sum(missing.values())} of {sum(emitted.values())} lines lost: {list(missing)[:5]}"
    assert "a previous run's line" not in kept and log_file.read_text().startswith("Config source=")


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; a socket timeout (30 s) means it never did."""
    sock.settimeout(30)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server held a stalled connection open for 30 s (read_timeout_s is 1); got {data!r}")
    return data


def test_stalled_request_heads_and_bodies_are_cut_off(tmp_path: Path, sqlite_db_url: str) -> None:
    env = service_env(tmp_path, sqlite_db_url, workers="0", read_timeout_s="1")
    port = _port()
    serve = _serve(tmp_path, env, port)
    try:
        wait_for(lambda: _ready(port), 60, "montage serve to be ready")
        with socket.create_connection(("127.0.0.1", port)) as silent:  # connects, says nothing
            assert _read_until_closed(silent) == b""
        with socket.create_connection(("127.0.0.1", port)) as half_head:
            half_head.sendall(b"POST /v1/public/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
            assert _read_until_closed(half_head) == b""
        with socket.create_connection(("127.0.0.1", port)) as half_body:
            half_body.sendall(
                b"POST /v1/public/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"path": '
            )
            answer = _read_until_closed(half_body)
            assert answer.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in answer, answer
        # A client that keeps its connection open between requests is uvicorn's keep-alive business, and
        # ordinary requests are unaffected.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/v1/public/health").status_code == 200
            assert client.post("/v1/public/jobs", json={"path": "x.mp4", "duration": 5}).status_code == 400
        assert _stop(serve) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
