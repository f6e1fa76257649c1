"""The worker with a real child process (ffmpeg) on a real SQLite file: success, timeout, lost lease."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from montage.db import jobs
from montage.db.database import Database, make_engine
from montage.workers.executor import FfmpegTrimExecutor, JobSpec, MontageRunExecutor
from montage.workers.worker import Worker, WorkerConfig, process_cmdline

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _config(tmp_path: Path, **kw: float) -> WorkerConfig:
    values = {"lease_s": 5.0, "heartbeat_s": 0.3, "poll_s": 0.1, "job_timeout_s": 60.0, "drain_grace_s": 5.0}
    values.update(kw)
    return WorkerConfig(worker_id="t", data_dir=tmp_path / "data", max_attempts=3, retention_s=3600, **values)


async def _submit(db: Database, clip: Path, duration: float = 2) -> str:
    async with db.begin() as session:
        return (await jobs.create_job(session, input_path=str(clip), uploaded=False, duration_s=duration,
                                      aspect="16:9")).id  # fmt: skip


async def _job(db: Database, job_id: str) -> jobs.Job:
    async with db.session() as session:
        job = await jobs.get_job(session, job_id)
        assert job is not None
        return job


@pytest.fixture
async def db(sqlite_db_url: str) -> Database:
    database = Database(make_engine(sqlite_db_url))
    yield database  # type: ignore[misc]
    await database.dispose()


async def test_worker_renders_a_real_clip(db: Database, clip: Path, tmp_path: Path) -> None:
    job_id = await _submit(db, clip)
    worker = Worker(db, FfmpegTrimExecutor(threads=1), _config(tmp_path))
    assert await worker.run(once=True) == 1
    job = await _job(db, job_id)
    assert job.state == "succeeded", job.error
    result = Path(job.result_path or "")
    assert result.name == "montage.mp4" and result.stat().st_size > 1000
    assert sorted(p.name for p in result.parent.iterdir()) == ["montage.mp4", "plan.json"]
    probe = await asyncio.create_subprocess_exec(
        shutil.which("ffprobe") or "ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
        str(result), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(probe.communicate(), 60)
    assert abs(float(out) - 2.0) < 0.2


async def test_renderer_failure_keeps_stderr_tail(
    db: Database, tmp_path: Path, require_tool: Callable[[str, str], str]
) -> None:
    require_tool("ffmpeg", "ffmpeg")  # the executor runs ffmpeg on the bad file: without one, skip (fail in CI)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video")
    job_id = await _submit(db, bad)
    await Worker(db, FfmpegTrimExecutor(threads=1), _config(tmp_path)).run(once=True)
    job = await _job(db, job_id)
    assert job.state == "failed" and "renderer exited" in (job.error or "") and "bad.mp4" in (job.error or "")


async def test_timeout_kills_the_process_group(db: Database, clip: Path, tmp_path: Path) -> None:
    job_id = await _submit(db, clip, duration=8)
    slow = FfmpegTrimExecutor(threads=1, realtime=True)  # -re: 8 s of input take 8 s
    await Worker(db, slow, _config(tmp_path, job_timeout_s=1.0)).run(once=True)
    job = await _job(db, job_id)
    assert job.state == "failed" and "timed out" in (job.error or "")
    assert not list((tmp_path / "data" / "results" / job_id).glob("*.mp4"))


async def test_cancel_makes_the_worker_kill_its_child(db: Database, clip: Path, tmp_path: Path) -> None:
    job_id = await _submit(db, clip, duration=8)
    worker = Worker(db, FfmpegTrimExecutor(threads=1, realtime=True), _config(tmp_path))
    lease = await jobs.claim_next(db, "t", 5.0)
    assert lease is not None
    task = asyncio.ensure_future(worker.execute(lease))
    await asyncio.sleep(1.0)
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    children = [
        p
        for p in pids
        if process_cmdline(p).startswith(shutil.which("ffmpeg") or "ffmpeg") and job_id in process_cmdline(p)
    ]
    assert children, "the renderer should be running"
    async with db.begin() as session:
        await jobs.cancel(session, job_id)
    assert await asyncio.wait_for(task, 10) == "lost"
    assert not [p for p in children if Path(f"/proc/{p}").exists() and process_cmdline(p)], "child survived"
    assert (await _job(db, job_id)).state == "cancelled"


async def test_retention_removes_old_files(db: Database, clip: Path, tmp_path: Path) -> None:
    job_id = await _submit(db, clip)
    worker = Worker(db, FfmpegTrimExecutor(threads=1), _config(tmp_path))
    await worker.run(once=True)
    results = tmp_path / "data" / "results" / job_id
    assert results.is_dir()
    expired = Worker(db, worker.executor, WorkerConfig(**{**worker.config.__dict__, "retention_s": 0.0}))
    await expired.maintenance(force=True)
    assert not results.exists() and (await _job(db, job_id)).purged_at is not None


MINIMAL = Path(__file__).resolve().parents[1] / "assets" / "minimal.mp4"


async def test_montage_run_executor_renders_a_real_montage(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production executor (`montage run` in a child process) on the real minimal asset, end to end."""
    import json
    import subprocess

    from montage.core import ffmpeg as core_ffmpeg

    for name in [k for k in os.environ if k.startswith("MONTAGE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MONTAGE_MEDIA__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the child reads no stray ./.env
    async with db.begin() as session:
        job_id = (await jobs.create_job(session, input_path=str(MINIMAL), uploaded=False, duration_s=2,
                                        aspect="9:16")).id  # fmt: skip
    assert await Worker(db, MontageRunExecutor(), _config(tmp_path, job_timeout_s=300.0)).run(once=True) == 1
    job = await _job(db, job_id)
    assert job.state == "succeeded", job.error
    result = Path(job.result_path or "")
    # one plan (moved, not copied) and the timelines `montage run` writes beside its output
    assert sorted(p.name for p in result.parent.iterdir()) == [
        "montage.edl", "montage.mp4", "montage.otio", "montage.xml", "plan.json",
    ]  # fmt: skip
    probe = subprocess.run(
        [core_ffmpeg.locate(None, environ={}).ffprobe or "ffprobe", "-v", "error", "-show_entries",
         "stream=codec_type,width,height:format=duration", "-of", "json", str(result)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    info = json.loads(probe.stdout)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert video["height"] > video["width"], video  # 9:16, as asked
    assert any(s["codec_type"] == "audio" for s in info["streams"])
    assert abs(float(info["format"]["duration"]) - 2.0) < 0.5, info["format"]
    plan = json.loads((result.parent / "plan.json").read_text())
    assert plan["segments"] and all(0 <= seg["start"] < seg["end"] <= 4.0 for seg in plan["segments"])


async def test_workers_paused_flag_applies_from_the_next_claim(db: Database, clip: Path, tmp_path: Path) -> None:
    from montage.db import flagstore

    job_id = await _submit(db, clip)
    async with db.begin() as session:
        await flagstore.put_flag(session, "WORKERS_PAUSED", True)
    worker = Worker(db, FfmpegTrimExecutor(threads=1), _config(tmp_path))
    assert await worker.run(once=True) == 0
    assert (await _job(db, job_id)).state == "queued"
    async with db.begin() as session:
        await flagstore.put_flag(session, "WORKERS_PAUSED", False)
    assert await worker.run(once=True) == 1
    assert (await _job(db, job_id)).state == "succeeded"


async def test_ffmpeg_trim_works_with_only_the_bundled_ffmpeg(
    db: Database, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ffmpeg on PATH: the executor uses imageio-ffmpeg's binary, as `montage run` does."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("MONTAGE_MEDIA__FFMPEG", raising=False)
    executor = FfmpegTrimExecutor(threads=1)
    assert "imageio_ffmpeg" in executor.ffmpeg
    job_id = await _submit(db, clip)
    assert await Worker(db, executor, _config(tmp_path)).run(once=True) == 1
    job = await _job(db, job_id)
    assert job.state == "succeeded", job.error
    assert Path(job.result_path or "").stat().st_size > 1000


def test_montage_run_executor_publishes_one_plan(tmp_path: Path) -> None:
    """The pipeline's own plan file becomes the result's plan.json: no second copy is left beside it."""
    import json

    scratch = tmp_path / ".attempt-1"
    scratch.mkdir()
    spec = JobSpec("j", tmp_path / "in.mp4", 5.0, "16:9", scratch / "montage.mp4", scratch / "plan.json")
    spec.output_tmp.write_bytes(b"rendered")
    pipeline_plan = scratch / "montage.plan.json"
    pipeline_plan.write_text('{"segments": []}')
    MontageRunExecutor().collect(spec, json.dumps({"plan": str(pipeline_plan)}))
    assert sorted(p.name for p in scratch.iterdir()) == ["montage.mp4", "plan.json"]
    assert json.loads(spec.plan_path.read_text()) == {"segments": []}
