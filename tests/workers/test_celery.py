"""The celery engine with real parts: redis-server, three Celery worker processes, real ffmpeg renders,
a real SQLite file (and, for the core exactly-once tests, a real PostgreSQL), the API over loopback HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from montage.core import loopback
from montage.db import migrate
from montage.runtime.jobcgroup import JobCgroups
from tests.pg.conftest import pg_cluster, pg_db
from tests.service.conftest import wait_for
from tests.workers.celery_cluster import (
    REDIS_SERVER,
    Api,
    Cluster,
    RedisServer,
    celery_env,
    serve_api,
    serve_cli,
    wait_state,
)

__all__ = ["pg_cluster", "pg_db"]  # the PostgreSQL fixtures, used by db_url's postgresql case

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed"),
]


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The job database: SQLite unless a test asks for ``postgresql`` too (parametrize indirect)."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_db_url"))
    cluster = request.getfixturevalue("pg_cluster")
    url = str(cluster.url(request.getfixturevalue("pg_db")))
    migrate.upgrade(url)
    return url


BOTH_DATABASES = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def cluster(tmp_path: Path, db_url: str, clip: Path) -> Iterator[Cluster]:
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    shutil.copy(clip, media / "clip.mp4")
    redis = RedisServer(tmp_path / "redis").start()
    # Renders read their input at native speed (-re): a 4 s job takes about 4 s, long enough to kill it mid-way.
    env = celery_env(tmp_path, db_url, redis.url)
    env["MONTAGE_SERVICE__EXECUTOR_REALTIME"] = "true"
    c = Cluster(tmp_path, db_url, redis, media / "clip.mp4", env)
    try:
        yield c
    finally:
        c.stop_all()
        redis.stop()


@pytest.fixture
def api(cluster: Cluster) -> Iterator[Api]:
    yield from serve_api(cluster)


def _kinds(cluster: Cluster, job_id: str) -> list[str]:
    return [kind for kind, _ in cluster.events(job_id)]


def _one_result(cluster: Cluster, job_id: str) -> None:
    job = cluster.job(job_id)
    assert job.state == "succeeded", job.error
    assert _kinds(cluster, job_id).count("succeeded") == 1
    out = Path(job.result_path)
    assert out.stat().st_size > 1000
    names = {p.name for p in out.parent.iterdir()}
    assert {"montage.mp4", "plan.json"} <= names <= {"montage.mp4", "plan.json", "memory.json"}, (
        names
    )  # no attempt dirs


@pytest.fixture
def served(cluster: Cluster) -> Iterator[Api]:
    yield from serve_cli(cluster)


@BOTH_DATABASES
def test_worker_sigkilled_mid_render_completes_exactly_once_elsewhere(cluster: Cluster, served: Api) -> None:
    api = served
    for name in ("m1", "m2", "m3"):
        cluster.start_worker(name)
    stats = api.admin("GET", "/v1/admin/stats")["engine"]
    assert stats["broker_up"] is True
    assert sorted(w["id"] for w in stats["workers"]) == ["m1", "m2", "m3"]
    assert all(w["version_matches"] for w in stats["workers"])

    job_id = api.submit("clip.mp4", 4)
    running = wait_state(cluster, job_id, {"running"}, 60)
    victim = running.worker_id.split("-")[0]
    wait_for(lambda: "spawned" in _kinds(cluster, job_id), 30, "the renderer to start")
    time.sleep(1.0)  # mid-render
    cluster.kill(victim)

    done = wait_state(cluster, job_id, {"succeeded", "failed"}, 90)
    _one_result(cluster, job_id)
    assert done.worker_id.split("-")[0] != victim, "the dead worker cannot have finished it"
    kinds = _kinds(cluster, job_id)
    assert kinds.count("claimed") == 2 and "requeued" in kinds and "relayed" in kinds, kinds
    stats = api.admin("GET", "/v1/admin/stats")["engine"]
    assert stats["dispatched"] >= 1 and stats["relayed"] >= 1


def test_redis_restarted_mid_run_loses_and_duplicates_nothing(cluster: Cluster, api: Api) -> None:
    for name in ("m1", "m2", "m3"):
        cluster.start_worker(name)
    ids = [api.submit("clip.mp4", 1.5) for _ in range(6)]
    wait_for(lambda: any(cluster.job(j).state == "running" for j in ids), 60, "a job to start")
    cluster.redis.stop()  # no persistence: the queued tasks are gone with it
    time.sleep(2)
    cluster.redis.start()  # same port, empty
    for job_id in ids:
        wait_state(cluster, job_id, {"succeeded", "failed", "cancelled"}, 150)
    for job_id in ids:
        _one_result(cluster, job_id)


@BOTH_DATABASES
def test_broker_down_at_submission_is_dispatched_when_it_returns(cluster: Cluster, api: Api) -> None:
    cluster.redis.stop()
    started = time.monotonic()
    job_id = api.submit("clip.mp4", 1)  # still 202: the job row is committed, the relay publishes later
    assert time.monotonic() - started < 15
    wait_for(lambda: "publish_failed" in _kinds(cluster, job_id), 10, "the failed publish to be recorded")
    stats = api.admin("GET", "/v1/admin/stats")["engine"]
    assert stats["broker_up"] is False and "Error" in stats["broker_error"]
    assert cluster.redis.password not in str(stats)
    time.sleep(1.5)
    assert cluster.job(job_id).state == "queued"
    cluster.redis.start()
    cluster.start_worker("m1")
    wait_state(cluster, job_id, {"succeeded", "failed"}, 90)
    _one_result(cluster, job_id)
    assert "relayed" in _kinds(cluster, job_id)


def test_cancel_reaches_a_running_task(cluster: Cluster, api: Api) -> None:
    metrics_port = loopback.free_port()
    cluster.start_worker("m1", "--metrics-port", str(metrics_port))
    job_id = api.submit("clip.mp4", 8)
    wait_state(cluster, job_id, {"running"}, 60)
    wait_for(lambda: "spawned" in _kinds(cluster, job_id), 30, "the renderer to start")
    pgid = next(d["pgid"] for k, d in cluster.events(job_id) if k == "spawned")
    api.admin("POST", f"/v1/admin/jobs/{job_id}/cancel")

    def renderer_gone() -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(renderer_gone, 15, "the renderer to be killed")
    time.sleep(1)
    job = cluster.job(job_id)
    assert job.state == "cancelled" and job.result_path is None
    # The worker is free again: the next job renders.
    second = api.submit("clip.mp4", 1)
    wait_state(cluster, second, {"succeeded", "failed"}, 60)
    _one_result(cluster, second)

    # The worker's pool child counted both tasks; its main process serves them (multiprocess mode).
    def scraped() -> str:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        return text if 'montage_celery_tasks_total{outcome="succeeded"} 1.0' in text else ""

    text = wait_for(scraped, 15, "the worker's metrics to count the second task")
    assert 'montage_celery_tasks_total{outcome="lost"} 1.0' in text, text


def _dispatch_path(cluster: Cluster, dispatcher: Any, path: Path) -> str:
    """A job for ``path`` created in the database and published, bypassing the API's input checks."""
    import asyncio

    from montage.db import jobs

    async def go() -> str:
        db = cluster.db
        try:
            async with db.begin() as session:
                job = await jobs.create_job(session, input_path=str(path), uploaded=False, duration_s=1,
                                            aspect="16:9")  # fmt: skip
            await dispatcher.dispatch(db, job.id)
            return str(job.id)
        finally:
            await db.dispose()

    return asyncio.run(go())


def test_task_without_job_row_and_missing_input_fail_cleanly(cluster: Cluster, api: Api) -> None:

    from montage.workers.celery_engine import TASK_NAME, Dispatcher

    cluster.start_worker("m1")
    dispatcher = Dispatcher(cluster.settings().settings)
    try:
        # A task for a job the database does not have, from an API that runs other code.
        dispatcher.app.send_task(TASK_NAME, args=["no-such-job"], kwargs={"api_version": "0.0.0+other"},
                                 queue="montage")  # fmt: skip
        wait_for(lambda: "no such job in the database" in cluster.log("m1"), 30, "the worker to drop the task")
        assert "code version mismatch" in cluster.log("m1") and "0.0.0+other" in cluster.log("m1")

        # A job whose input is not on the worker's machine: bounded retries, then failed with the reason.
        missing = cluster.tmp_path / "media" / "gone.mp4"

        job_id = _dispatch_path(cluster, dispatcher, missing)
        job = wait_state(cluster, job_id, {"failed", "succeeded"}, 60)
        assert job.state == "failed" and job.attempts == 3
        assert f"input file {missing} does not exist on worker host" in job.error
        assert "attempt 3 of 3" in job.error
    finally:
        dispatcher.close()
    # The worker survived both: a good job still renders.
    good = api.submit("clip.mp4", 1)
    wait_state(cluster, good, {"succeeded", "failed"}, 60)
    _one_result(cluster, good)


def test_pause_timeout_and_renderer_failure_as_the_local_worker(cluster: Cluster, api: Api) -> None:
    """tests/workers/test_worker.py's pause, timeout and renderer-failure cases, through Celery tasks."""
    import asyncio

    from montage.db import flagstore
    from montage.workers.celery_engine import Dispatcher

    async def put_paused(value: bool) -> None:
        db = cluster.db
        try:
            async with db.begin() as session:
                await flagstore.put_flag(session, "WORKERS_PAUSED", value)
        finally:
            await db.dispose()

    cluster.env["MONTAGE_SERVICE__JOB_TIMEOUT_S"] = "2"
    cluster.start_worker("m1")
    # WORKERS_PAUSED: the task goes back to the queue unclaimed (no attempt used) until the flag is cleared
    asyncio.run(put_paused(True))
    job_id = api.submit("clip.mp4", 1)
    wait_for(lambda: "workers are paused" in cluster.log("m1"), 30, "the task to see the pause")
    time.sleep(2)
    job = cluster.job(job_id)
    assert (job.state, job.attempts) == ("queued", 0), (job.state, job.attempts)
    asyncio.run(put_paused(False))
    wait_state(cluster, job_id, {"succeeded", "failed"}, 90)
    _one_result(cluster, job_id)
    # a render longer than service.job_timeout_s: killed with its process group, the job failed
    slow = api.submit("clip.mp4", 8)
    job = wait_state(cluster, slow, {"succeeded", "failed"}, 60)
    assert job.state == "failed" and "timed out" in (job.error or ""), job.error
    pgid = next(d["pgid"] for k, d in cluster.events(slow) if k == "spawned")
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    # a renderer that fails (not a video): the job failed with the renderer's stderr tail
    bad = cluster.tmp_path / "media" / "bad.mp4"
    bad.write_bytes(b"this is not a video")
    dispatcher = Dispatcher(cluster.settings().settings)
    try:
        failed = _dispatch_path(cluster, dispatcher, bad)
    finally:
        dispatcher.close()
    job = wait_state(cluster, failed, {"succeeded", "failed"}, 60)
    error = job.error or ""
    assert job.state == "failed" and "renderer exited" in error and "bad.mp4" in error, error


def test_worker_warm_shutdown_finishes_its_job(cluster: Cluster, api: Api) -> None:
    child = cluster.start_worker("m1")
    job_id = api.submit("clip.mp4", 3)
    wait_for(lambda: "spawned" in _kinds(cluster, job_id), 60, "the renderer to start")
    child.send_signal(15)
    assert child.wait(timeout=60) == 0, cluster.log("m1")
    _one_result(cluster, job_id)


def test_retention_as_the_local_worker(cluster: Cluster) -> None:
    """tests/workers/test_worker.py's retention case through Celery: the relay inside ``montage serve``
    removes a finished job's files after ``service.retention_hours``, and its result then answers 410."""
    import contextlib

    cluster.env["MONTAGE_SERVICE__RETENTION_HOURS"] = "0.002"  # 7.2 s after the job finished
    with contextlib.contextmanager(serve_cli)(cluster) as api:
        cluster.start_worker("m1")
        job_id = api.submit("clip.mp4", 1)
        job = wait_state(cluster, job_id, {"succeeded", "failed"}, 90)
        _one_result(cluster, job_id)
        results = Path(job.result_path).parent
        wait_for(lambda: cluster.job(job_id).purged_at is not None, 60, "the relay to apply the retention")
        assert not results.exists()
        gone = api.client.get(f"/v1/public/jobs/{job_id}/result")
        assert gone.status_code == 410, gone.text


CGROUPS = JobCgroups.detect()


@pytest.mark.skipif(not CGROUPS.available, reason=f"no writable memory cgroup: {CGROUPS.reason}")
def test_a_task_sweeps_the_cgroup_a_killed_worker_left(cluster: Cluster, api: Api) -> None:
    """The local worker's cgroup sweep through Celery: the workers run under this process's cgroup, so a
    cgroup left for a finished job (as a SIGKILLed worker leaves it) is removed by the next task there."""
    cluster.start_worker("m1")
    first = api.submit("clip.mp4", 1)
    wait_state(cluster, first, {"succeeded", "failed"}, 90)
    _one_result(cluster, first)
    left = CGROUPS.create(first, 64 * 1024 * 1024)  # its name, as the dead worker's would be
    assert left is not None
    try:
        time.sleep(3.5)  # older than the cluster's 3 s lease: a fresh cgroup is never swept
        second = api.submit("clip.mp4", 1)
        wait_state(cluster, second, {"succeeded", "failed"}, 90)
        _one_result(cluster, second)
        wait_for(lambda: not left.cgroup.path.exists(), 10, "the task's sweep to remove the cgroup")
        assert "removed the empty cgroups of finished jobs" in cluster.log("m1")
    finally:
        left.close()


def test_a_worker_with_only_the_bundled_ffmpeg_renders(cluster: Cluster, api: Api) -> None:
    """tests/workers/test_worker.py's bundled-ffmpeg case through Celery: no ffmpeg on the worker's PATH,
    the task's executor uses imageio-ffmpeg's binary."""
    empty = cluster.tmp_path / "bin"
    empty.mkdir()
    cluster.env["PATH"] = str(empty)
    cluster.env.pop("MONTAGE_MEDIA__FFMPEG", None)
    cluster.start_worker("m1")
    job_id = api.submit("clip.mp4", 1)
    wait_state(cluster, job_id, {"succeeded", "failed"}, 90)
    _one_result(cluster, job_id)
    assert "imageio_ffmpeg" in cluster.log("m1"), cluster.log("m1")[-2000:]


def test_montage_run_executor_through_celery(cluster: Cluster, api: Api) -> None:
    """tests/workers/test_worker.py's production-executor case through Celery: `montage run` renders a real
    9:16 montage of the minimal asset in the task, with its timelines and one plan beside it."""
    minimal = Path(__file__).resolve().parents[1] / "assets" / "minimal.mp4"
    shutil.copy(minimal, cluster.tmp_path / "media" / "minimal.mp4")
    cluster.env.update({"MONTAGE_SERVICE__EXECUTOR": "montage-run", "MONTAGE_SERVICE__EXECUTOR_REALTIME": "false",
                        "MONTAGE_MEDIA__CACHE_DIR": str(cluster.tmp_path / "cache")})  # fmt: skip
    cluster.start_worker("m1")
    resp = api.client.post("/v1/public/jobs", json={"path": "minimal.mp4", "duration": 2, "aspect": "9:16"})
    assert resp.status_code == 202, resp.text
    job = wait_state(cluster, str(resp.json()["id"]), {"succeeded", "failed"}, 240)
    assert job.state == "succeeded", job.error
    result = Path(job.result_path)
    assert sorted(p.name for p in result.parent.iterdir() if p.name != "memory.json") == [
        "montage.edl", "montage.mp4", "montage.otio", "montage.xml", "plan.json",
    ]  # fmt: skip
    assert f"job {job.id} attempt 1: {sys.executable} -m montage run " in cluster.log("m1"), cluster.log("m1")[-2000:]
    plan = json.loads((result.parent / "plan.json").read_text())
    assert plan["segments"] and all(0 <= seg["start"] < seg["end"] <= 4.0 for seg in plan["segments"])


def _worker_cli(tmp_path: Path, sqlite_db_url: str, broker_url: str) -> subprocess.CompletedProcess[str]:
    env = celery_env(tmp_path, sqlite_db_url, broker_url)
    return subprocess.run([sys.executable, "-m", "montage", "worker", "--engine", "celery", "--scratch",
                           str(tmp_path / "w")], env=env, capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:6379/0", "not a Redis URL (scheme 'http')"),
        ("redis://:hunter2@127.0.0.1:notaport/0", "its port is not a number"),
        ("redis://127.0.0.1:6379/zero", "its database 'zero' is not a number"),
    ],
)
def test_malformed_broker_url_is_a_usage_error(tmp_path: Path, sqlite_db_url: str, url: str, expected: str) -> None:
    result = _worker_cli(tmp_path, sqlite_db_url, url)
    assert result.returncode == 2, result.stderr
    assert "celery.broker_url" in result.stderr and expected in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_refused_broker_connection_names_the_masked_url(tmp_path: Path, sqlite_db_url: str) -> None:
    port = loopback.free_port()
    result = _worker_cli(tmp_path, sqlite_db_url, f"redis://:hunter2@127.0.0.1:{port}/0")
    assert result.returncode == 6, result.stderr
    assert f"redis://:****@127.0.0.1:{port}/0" in result.stderr and "did not answer" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
