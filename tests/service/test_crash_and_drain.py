"""Crash safety and draining with real processes: `montage worker` SIGKILLed mid-render; `montage serve` SIGTERMed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from montage.core.loopback import free_port
from montage.db import jobs
from montage.db.database import Database, make_engine
from montage.db.models import JobEvent
from montage.workers.worker import process_cmdline
from tests.service.conftest import service_env, wait_for

pytestmark = pytest.mark.slow


def _query(db_url: str, fn: Any) -> Any:
    async def go() -> Any:
        db = Database(make_engine(db_url))
        try:
            async with db.begin() as session:
                return await fn(session)
        finally:
            await db.dispose()

    return asyncio.run(go())


def _job(db_url: str, job_id: str) -> Any:
    return _query(db_url, lambda s: jobs.get_job(s, job_id))


def _events(db_url: str, job_id: str) -> list[str]:
    from sqlalchemy import select

    async def fn(session: Any) -> list[str]:
        rows = await session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        return list(rows)

    return _query(db_url, fn)


def _worker(env: dict[str, str], name: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "montage", "worker", "--id", name], env=env, cwd=tmp_path, stdout=log, stderr=log
    )


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    try:
        if proc.poll() is None:
            proc.send_signal(sig)
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("executor", ["ffmpeg-trim", "montage-run"])
def test_sigkill_mid_render_gives_exactly_one_result_and_no_lost_job(
    tmp_path: Path, sqlite_db_url: str, make_clip: Callable[[int], Path], executor: str
) -> None:
    # lease 6 s with 0.5 s heartbeats: a survivor delayed by a loaded machine keeps its lease (at 2 s a
    # slow heartbeat under load lost it and made a third attempt), and the re-queue still comes quickly.
    env = service_env(tmp_path, sqlite_db_url, executor=executor, executor_realtime="true", lease_s="6")
    source, long = make_clip(8), 4.0
    if executor == "montage-run":
        # `montage run` is not paced (executor_realtime is ffmpeg-trim's): a 4 s montage of the 8 s clip
        # finished within the second below on a fast machine, so it gets a 40 s input and a 12 s montage.
        source, long = make_clip(40), 12.0

    def submit(duration: float) -> str:
        job = _query(sqlite_db_url, lambda s: jobs.create_job(s, input_path=str(source), uploaded=False,
                                                               duration_s=duration, aspect="16:9"))  # fmt: skip
        return str(job.id)

    job_ids = [submit(long), submit(1)]
    results = tmp_path / "data" / "results" / job_ids[0]
    first = _worker(env, "doomed", tmp_path)
    second = None
    try:
        wait_for(lambda: "spawned" in _events(sqlite_db_url, job_ids[0]), 60, "the first render to start")
        time.sleep(1.0)  # mid-render: ffmpeg-trim paces 4 s of input in real time; montage run takes longer
        assert _job(sqlite_db_url, job_ids[0]).state == "running"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        second = _worker(env, "survivor", tmp_path)
        wait_for(lambda: all(_job(sqlite_db_url, j).state == "succeeded" for j in job_ids), 180, "both jobs")
        assert _stop(second) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    crashed = _job(sqlite_db_url, job_ids[0])
    assert crashed.attempts == 2 and crashed.worker_id == "survivor"
    files = sorted(p.name for p in results.iterdir())
    assert [f for f in files if f.endswith(".mp4")] == ["montage.mp4"] and "plan.json" in files  # one result
    assert not [f for f in files if f.startswith(".attempt-")], files  # no partial output left behind
    assert _events(sqlite_db_url, job_ids[0]) == [
        "submitted", "claimed", "spawned", "requeued", "claimed", "spawned", "succeeded",
    ]  # fmt: skip
    counts = _query(sqlite_db_url, jobs.counts_by_state)
    assert counts == {"queued": 0, "running": 0, "succeeded": 2, "failed": 0, "cancelled": 0}
    # The dead worker's renderer (and anything it started) did not outlive it.
    survivors = [pid for pid in os.listdir("/proc") if pid.isdigit() and job_ids[0] in process_cmdline(int(pid))]
    assert not survivors, [process_cmdline(int(p)) for p in survivors]


def test_serve_logs_config_source_first_and_drains_on_sigterm(tmp_path: Path, sqlite_db_url: str, clip: Path) -> None:
    port = free_port()
    env = service_env(tmp_path, sqlite_db_url, executor_realtime="true", drain_grace_s="30")
    log_file = tmp_path / "serve.log"
    (tmp_path / "media").mkdir(exist_ok=True)
    out = (tmp_path / "serve.out").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "montage", "serve", "--port", str(port), "--log-file", str(log_file)],
        env=env, cwd=tmp_path, stdout=out, stderr=out,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(base), 60, "montage serve to be ready")
        with clip.open("rb") as fh:
            resp = httpx.post(f"{base}/v1/public/jobs", files={"file": ("clip.mp4", fh)}, data={"duration": "3"})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        wait_for(lambda: httpx.get(f"{base}/v1/public/jobs/{job_id}").json()["state"] == "running", 60, "running")
        rc = _stop(serve, signal.SIGTERM, timeout=90)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert rc == 0, (tmp_path / "serve.out").read_text()
    assert _job(sqlite_db_url, job_id).state == "succeeded"  # the running job finished within the grace period
    lines = log_file.read_text().splitlines()
    assert lines[0] == "Config source=settings_v2"
    assert any("draining" in line for line in lines) and any("stopped cleanly" in line for line in lines)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v1/public/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_real_montage_run_through_serve_gives_a_downloadable_montage(
    tmp_path: Path, sqlite_db_url: str, clip: Path
) -> None:
    """The README's path: `montage serve` on SQLite with an embedded worker running the media pipeline."""
    import json

    port = free_port()
    env = service_env(tmp_path, sqlite_db_url, executor="montage-run")
    (tmp_path / "media").mkdir(exist_ok=True)
    out = (tmp_path / "serve.out").open("wb")
    serve = subprocess.Popen([sys.executable, "-m", "montage", "serve", "--port", str(port)],
                             env=env, cwd=tmp_path, stdout=out, stderr=out)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(base), 60, "montage serve to be ready")
        with clip.open("rb") as fh:
            resp = httpx.post(f"{base}/v1/public/jobs", files={"file": ("talk.mp4", fh)},
                              data={"duration": "3", "aspect": "9:16"})  # fmt: skip
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        done = wait_for(lambda: _finished(base, job_id), 180, "the montage job")
        assert done["state"] == "succeeded", done["error"]
        result = httpx.get(f"{base}/v1/public/jobs/{job_id}/result", timeout=60)
        plan = httpx.get(f"{base}/v1/public/jobs/{job_id}/plan").json()
    finally:
        _stop(serve)
    assert result.status_code == 200 and result.headers["content-type"] == "video/mp4"
    video = tmp_path / "downloaded.mp4"
    video.write_bytes(result.content)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,width,height:format=duration", "-of", "json",
         str(video)], capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    info = json.loads(probe.stdout)
    v = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (v["width"], v["height"]) == (360, 640)
    assert any(s["codec_type"] == "audio" for s in info["streams"])
    assert abs(float(info["format"]["duration"]) - 3.0) < 0.5
    assert plan and isinstance(plan, dict)


def _finished(base: str, job_id: str) -> dict[str, Any] | None:
    job = httpx.get(f"{base}/v1/public/jobs/{job_id}").json()
    return job if job["state"] in {"succeeded", "failed", "cancelled"} else None


def test_serve_restarts_a_crashed_embedded_worker(tmp_path: Path, sqlite_db_url: str) -> None:
    port = free_port()
    env = service_env(tmp_path, sqlite_db_url)
    (tmp_path / "media").mkdir(exist_ok=True)
    out = (tmp_path / "serve.out").open("wb")
    serve = subprocess.Popen([sys.executable, "-m", "montage", "serve", "--port", str(port)],
                             env=env, cwd=tmp_path, stdout=out, stderr=out)  # fmt: skip

    def workers() -> list[int]:
        return [
            int(p) for p in os.listdir("/proc")
            if p.isdigit() and "montage worker --id embedded-0" in process_cmdline(int(p))
            and _ppid(int(p)) == serve.pid
        ]  # fmt: skip

    try:
        wait_for(lambda: _ready(f"http://127.0.0.1:{port}"), 60, "montage serve to be ready")
        first = wait_for(workers, 30, "the embedded worker")
        os.kill(first[0], signal.SIGKILL)
        replaced = wait_for(lambda: [p for p in workers() if p not in first], 30, "a replacement worker")
        assert replaced
        assert _stop(serve) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert "exited with -9; restarting it" in (tmp_path / "serve.out").read_text()


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])
