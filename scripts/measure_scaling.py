#!/usr/bin/env python3
"""The celery engine's scaling figure: N small jobs through 1, 2 and 3 Celery workers and the local engine.

``python scripts/measure_scaling.py [--jobs 12] [--duration 1] [--workers 1,2,3] [--out FILE.json]``

Everything on this machine, under a temporary directory: a redis-server on a loopback port, one
SQLite database per run, a 4 s 640x360 test clip made by ffmpeg, the ``ffmpeg-trim`` executor (one
thread per render).  Per run (engine, workers): start the workers, submit all jobs at once (the job
rows, then for celery one published task each, as the API does), wait until every job finished.

Printed per run: jobs per minute (jobs / (last finish - first submission)), queue wait p50/p99
(claim - submission), and the engine's overhead per job: the mean time a worker held a job
(claim to finish) minus the median time of the same render run directly (no worker, no database).
A print, not a test: figures vary with the machine's load, which is shown with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from montage.core import ffmpeg as core_ffmpeg
from montage.core import loopback, proc

ROOT = Path(__file__).resolve().parent.parent  # run with the project's venv: .venv/bin/python scripts/...

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _env(tmp: Path, db_url: str, broker: str, engine: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONTAGE_") and k != "USE_SETTINGS_V2"}
    env.update({
        "USE_SETTINGS_V2": "true", "MONTAGE_ENV_FILE": str(tmp / "none.env"), "MONTAGE_DB__URL": db_url,
        "MONTAGE_DATA_DIR": str(tmp / "data"), "MONTAGE_SERVICE__MEDIA_ROOT": str(tmp / "media"),
        "MONTAGE_OPS__FLAGS_FILE": str(tmp / "flags.json"), "MONTAGE_SERVICE__EXECUTOR": "ffmpeg-trim",
        "MONTAGE_SERVICE__POLL_S": "0.2", "MONTAGE_SERVICE__ENGINE": engine, "MONTAGE_MEDIA__THREADS": "1",
        "MONTAGE_CELERY__BROKER_URL": broker,
    })  # fmt: skip
    return env


def _settings(env: dict[str, str]) -> Any:
    from montage.settings import load_settings

    return load_settings(environ=env).settings


async def _submit(settings: Any, clip: Path, n: int, duration: float, celery: bool) -> list[str]:
    from montage.db import jobs
    from montage.db.database import Database

    db = Database.from_settings(settings)
    dispatcher = None
    if celery:
        from montage.workers.celery_engine import Dispatcher

        dispatcher = Dispatcher(settings)
    try:
        ids = []
        for _ in range(n):
            async with db.begin() as session:
                job = await jobs.create_job(session, input_path=str(clip), uploaded=False, duration_s=duration,
                                            aspect="16:9")  # fmt: skip
            if dispatcher is not None:
                assert await dispatcher.dispatch(db, job.id)
            ids.append(job.id)
        return ids
    finally:
        if dispatcher is not None:
            dispatcher.close()
        await db.dispose()


async def _rows(settings: Any) -> list[Any]:
    from sqlalchemy import select

    from montage.db.database import Database
    from montage.db.models import Job

    db = Database.from_settings(settings)
    try:
        async with db.session() as session:
            return list(
                (await session.execute(select(Job.state, Job.created_at, Job.started_at, Job.finished_at))).all()
            )
    finally:
        await db.dispose()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def run_once(base: Path, broker: str, clip: Path, engine: str, workers: int, n: int, duration: float) -> dict[str, Any]:
    from montage.db import migrate
    from montage.workers.celery_engine import is_registered

    tmp = base / f"{engine}-{workers}"
    (tmp / "media").mkdir(parents=True)
    db_url = f"sqlite+aiosqlite:///{tmp / 'montage.db'}"
    migrate.upgrade(db_url)
    env = _env(tmp, db_url, broker, engine)
    settings = _settings(env)
    if engine == "celery":  # an empty queue per run
        import redis

        redis.Redis.from_url(broker).flushdb()
    children = []
    try:
        for i in range(workers):
            name = f"{engine}{i}"
            argv = [sys.executable, "-m", "montage", "worker", "--id", name, "--log-file", str(tmp / f"{name}.log")]
            if engine == "celery":
                argv += ["--engine", "celery", "--scratch", str(tmp / name)]
            with (tmp / f"{name}.out").open("wb") as out:
                children.append(proc.spawn(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
            if engine == "celery":
                _wait(lambda name=name: is_registered(broker, name), 60, f"worker {name}")
        time.sleep(1.0)  # local workers start polling
        asyncio.run(_submit(settings, clip, n, duration, engine == "celery"))
        _wait(lambda: all(r.finished_at for r in asyncio.run(_rows(settings))), 60 + 30 * n, "all jobs")
    finally:
        for child in children:
            proc.stop(child, grace_s=20)
    rows = asyncio.run(_rows(settings))
    first = min(r.created_at for r in rows)
    last = max(r.finished_at for r in rows)
    waits = [(r.started_at - r.created_at).total_seconds() for r in rows]
    held = [(r.finished_at - r.started_at).total_seconds() for r in rows]
    return {
        "engine": engine,
        "workers": workers,
        "jobs": n,
        "succeeded": sum(r.state == "succeeded" for r in rows),
        "jobs_per_min": round(n / (last - first).total_seconds() * 60, 1),
        "queue_wait_p50_s": round(_pct(waits, 0.5), 2),
        "queue_wait_p99_s": round(_pct(waits, 0.99), 2),
        "held_mean_s": round(statistics.mean(held), 3),
    }


def direct_render_s(clip: Path, duration: float, out_dir: Path, repeats: int = 3) -> float:
    from montage.workers.executor import FfmpegTrimExecutor, JobSpec

    executor = FfmpegTrimExecutor(threads=1)
    times = []
    for i in range(repeats):
        spec = JobSpec(f"direct{i}", clip, duration, "16:9", out_dir / f"d{i}.mp4", out_dir / f"d{i}.json")
        started = time.monotonic()
        subprocess.run(executor.argv(spec), check=True, capture_output=True, timeout=120)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds of output per job")
    parser.add_argument("--workers", default="1,2,3", help="worker counts, comma-separated")
    parser.add_argument("--engines", default="local,celery")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",")]
    ffmpeg = core_ffmpeg.locate(None, environ={}).ffmpeg
    with tempfile.TemporaryDirectory(prefix="montage-scaling-") as raw:
        base = Path(raw)
        clip = base / "clip.mp4"
        subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25:duration=4",
                        "-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-c:v", "libx264", "-preset",
                        "ultrafast", "-c:a", "aac", "-shortest", str(clip)], check=True, timeout=120)  # fmt: skip
        port = loopback.free_port()
        (base / "redis").mkdir()
        redis_proc = proc.spawn([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir",
                                 str(base / "redis"), "--save", "", "--appendonly", "no"],
                                stdout=subprocess.DEVNULL)  # fmt: skip
        broker = f"redis://127.0.0.1:{port}/0"
        try:
            time.sleep(0.5)
            render_s = direct_render_s(clip, args.duration, base)
            load_before = os.getloadavg()
            results = []
            for engine in args.engines.split(","):
                for k in counts:
                    r = run_once(base, broker, clip, engine, k, args.jobs, args.duration)
                    r["overhead_per_job_s"] = round(r["held_mean_s"] - render_s, 3)
                    results.append(r)
                    print(json.dumps(r), flush=True)
            load_after = os.getloadavg()
        finally:
            proc.stop(redis_proc, grace_s=5)
    summary = {"direct_render_s": round(render_s, 3), "cpus": os.cpu_count(),
               "loadavg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
               "command": " ".join(["python", "scripts/measure_scaling.py", *(argv or sys.argv[1:])]),
               "runs": results}  # fmt: skip
    print()
    load = f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}"
    print(f"direct render {render_s:.2f} s; {os.cpu_count()} CPUs; {load}")
    print("| engine | workers | jobs/min | queue wait p50 | queue wait p99 | overhead/job |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['engine']} | {r['workers']} | {r['jobs_per_min']} | {r['queue_wait_p50_s']} s | "
              f"{r['queue_wait_p99_s']} s | {r['overhead_per_job_s']} s |")  # fmt: skip
    if args.out is not None:
        from montage.core.files import atomic_write_text

        atomic_write_text(args.out, json.dumps(summary, indent=2) + "\n")
    return 0 if all(r["succeeded"] == r["jobs"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
