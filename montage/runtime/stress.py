"""The memory stress run behind the ``stress`` check kind: real Montage jobs under a real cgroup limit.

    python -m montage.runtime.stress --out DIR [--limit-mb 2048] [--control-limit-mb 1536] [--jobs 3]
                                     [--control-jobs 4] [--target-mb 600]

1. A parent cgroup ``montage-stress-<pid>`` (``--limit-mb``, swap off) is created as a child of this
   process's own memory cgroup; it is removed at the end, also after SIGTERM/SIGINT or an error.
2. Calibration, measured in this run: the 60 s 1280x720 reference clip is scaled to 320x180 and
   rendered once, then rendered at 1280x720 once (``montage run --duration 20`` through a real
   ``montage worker``); each job's peak comes from its own job cgroup (``memory.json`` the worker
   writes from ``memory.max_usage_in_bytes`` / ``memory.peak``).  A curve through the two points
   (a power law, peak = p0 x (pixels / px0) ** e) gives the resolution whose render should peak at
   ``--target-mb`` (at most 2560x1440, to bound the run time).
3. Stress: ``--jobs`` such jobs at that resolution, one worker process each, concurrently, inside
   the parent cgroup; per-job peak and exit state, the parent's peak, OOM kills (parent + every job
   cgroup: cgroup v1 counts a kill only in the victim's own cgroup).
4. Negative control: ``--control-jobs`` (default 4) such jobs under ``--control-limit-mb``; it must
   produce an OOM kill (the run stops as soon as one is counted), else the limit was not real.
   Measured here: the same three ~458 MB jobs under 1.5 GiB did not OOM (the kernel reclaimed
   their page cache), so the default control adds a fourth job.

Writes ``DIR/stress_metrics.json`` (every figure with the file it came from).  Media and the
database live in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from montage.core import cgroupfs
from montage.core.cgroupfs import Cgroup
from montage.core.files import atomic_write_text
from montage.runtime.jobcgroup import JOB_PREFIX, JobCgroups

MIB = 1024 * 1024
OUTPUT_S = 20.0
REFERENCE = (1280, 720)
SMALL = (320, 180)
METRICS_NAME = "stress_metrics.json"
ROOT = Path(__file__).resolve().parents[2]  # the repository (scripts/build_corpus.py builds the reference clip)


class _Stop(Exception):
    """SIGTERM/SIGINT: clean up and leave."""


MAIN_ADMISSION = {"MONTAGE_MEMORY__ADMISSION": "true", "MONTAGE_MEMORY__RESERVE_MB": "200"}
CONTROL_ADMISSION = {"MONTAGE_MEMORY__ADMISSION": "false"}  # the negative control must be able to OOM


def _ffmpeg() -> str:
    from montage.core.ffmpeg import locate

    return locate().ffmpeg


def _run(argv: list[str], timeout_s: float = 900) -> None:
    subprocess.run(argv, check=True, timeout=timeout_s, stdin=subprocess.DEVNULL, capture_output=True)


def make_clip(reference: Path, size: tuple[int, int], out: Path) -> Path:
    """The reference clip scaled to ``size`` (same shots, so the same plan, more or fewer pixels)."""
    _run([_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(reference),
          "-vf", f"scale={size[0]}:{size[1]},setsar=1", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
          "-pix_fmt", "yuv420p", "-c:a", "copy", "-movflags", "+faststart", str(out)])  # fmt: skip
    return out


class Batch:
    """Jobs in one SQLite database, rendered by one ``montage worker --once`` process per job."""

    def __init__(self, work: Path, name: str, env: dict[str, str] | None = None) -> None:
        self.dir = work / name
        self.dir.mkdir(parents=True)
        self.url = f"sqlite+aiosqlite:///{self.dir / 'montage.db'}"
        self.env = {**os.environ, "MONTAGE_DB__URL": self.url, "MONTAGE_DATA_DIR": str(self.dir / "data"),
                    "MONTAGE_SERVICE__EXECUTOR": "montage-run", "USE_SETTINGS_V2": "true",
                    "MONTAGE_SERVICE__JOB_TIMEOUT_S": "3000", "MONTAGE_SERVICE__MAX_ATTEMPTS": "1",
                    **(env or {})}  # fmt: skip
        from montage.db import migrate

        migrate.upgrade(self.url)

    def submit(self, clips: list[Path]) -> list[str]:
        from montage.db import jobs
        from montage.db.database import Database, make_engine

        async def go() -> list[str]:
            db = Database(make_engine(self.url))
            try:
                ids = []
                for clip in clips:
                    async with db.begin() as session:
                        job = await jobs.create_job(session, input_path=str(clip), uploaded=False,
                                                    duration_s=OUTPUT_S, aspect="16:9")  # fmt: skip
                        ids.append(job.id)
                return ids
            finally:
                await db.dispose()

        return asyncio.run(go())

    def start_workers(self, n: int, cgroup: Cgroup) -> list[subprocess.Popen[bytes]]:
        procs_path = str(cgroupfs.procs_file(cgroup))

        def join() -> None:  # pragma: no cover - in the child before exec
            fd = os.open(procs_path, os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)

        log = open(self.dir / "workers.log", "ab")
        try:
            return [
                subprocess.Popen(
                    [sys.executable, "-m", "montage", "worker", "--once", "--id", f"stress-{i}"],
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    preexec_fn=join,
                )  # fmt: skip
                for i in range(n)
            ]
        finally:
            log.close()

    def outcomes(self, ids: list[str]) -> list[dict[str, Any]]:
        from montage.db import jobs
        from montage.db.database import Database, make_engine

        async def go() -> list[dict[str, Any]]:
            db = Database(make_engine(self.url))
            try:
                out = []
                async with db.session() as session:
                    for job_id in ids:
                        job = await jobs.get_job(session, job_id)
                        assert job is not None
                        memory_file = self.dir / "data" / "results" / job_id / "memory.json"
                        memory = json.loads(memory_file.read_text()) if memory_file.is_file() else None
                        out.append({"job_id": job_id, "state": job.state, "error": job.error,
                                    "result_s": _duration(job.result_path), "memory": memory,
                                    "memory_source": str(memory_file) if memory else None})  # fmt: skip
                return out
            finally:
                await db.dispose()

        return asyncio.run(go())


def _duration(path: str | None) -> float | None:
    from montage.core.ffmpeg import locate

    ffprobe = locate().ffprobe
    if not path or ffprobe is None or not Path(path).is_file():
        return None
    proc = subprocess.run([ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    try:
        return float(proc.stdout.strip())
    except ValueError:
        return None


def _job_ooms(parent: Cgroup) -> int:
    return sum(cgroupfs.counters(c).oom_kills or 0 for c in cgroupfs.children(parent, JOB_PREFIX))


def run_batch(
    work: Path,
    name: str,
    parent: Cgroup,
    clips: list[Path],
    *,
    stop_on_oom: bool = False,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Render ``clips`` concurrently (one worker each) inside ``parent``; figures from the cgroup counters."""
    batch = Batch(work, name, env)
    ids = batch.submit(clips)
    peak_reset = cgroupfs.reset_peak(parent)
    before = cgroupfs.counters(parent)
    started = time.monotonic()
    workers = batch.start_workers(len(clips), parent)
    live_ooms = 0
    stopped_early = False
    try:
        while any(w.poll() is None for w in workers):
            live_ooms = max(live_ooms, _job_ooms(parent))
            if stop_on_oom and live_ooms:
                stopped_early = True
                break
            time.sleep(0.5)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
            worker.wait()
        for leftover in cgroupfs.children(parent, JOB_PREFIX):  # the killed workers' job cgroups
            live_ooms = max(live_ooms, _job_ooms(parent))
            cgroupfs.remove(leftover)
    after = cgroupfs.counters(parent)
    jobs = batch.outcomes(ids)
    job_ooms = sum((j["memory"] or {}).get("oom_kills") or 0 for j in jobs)
    parent_ooms = (after.oom_kills or 0) - (before.oom_kills or 0)
    return {
        "jobs": jobs,
        "worker_exit_codes": [w.returncode for w in workers],
        "duration_s": round(time.monotonic() - started, 1),
        "parent_peak_mb": round((after.peak_bytes or 0) / MIB, 1),
        "parent_peak_source": after.sources.get("peak"),
        "parent_peak_since": "this batch (reset)" if peak_reset else "the cgroup's creation",
        "oom_kills": parent_ooms + max(job_ooms, live_ooms),
        "oom_kill_sources": {
            "parent": after.sources.get("oom_kills"),
            "parent_count": parent_ooms,
            "job_cgroups": max(job_ooms, live_ooms),
        },  # fmt: skip
        "stopped_after_first_oom": stopped_early,
    }


def _peak_mb(job: dict[str, Any]) -> float | None:
    memory = job.get("memory") or {}
    peak = memory.get("peak_bytes")
    return None if peak is None else round(peak / MIB, 1)


MAX_HEIGHT = 1440  # 2560x1440: three such renders take ~10 min on 2 shared cores


def _size_for(
    target_mb: float, small: tuple[tuple[int, int], float], big: tuple[tuple[int, int], float]
) -> dict[str, Any]:
    """The 16:9 size whose render should peak at ``target_mb``: a power law through the two points.

    Measured here (v1 cgroup peaks): 107 MB at 320x180, 318 MB at 1280x720, 458 MB at 1920x1080; a
    line through the first two predicted 600 MB for 1920x1080, the power law 437 MB.
    """
    (s_size, s_peak), (b_size, b_peak) = small, big
    s_px, b_px = s_size[0] * s_size[1], b_size[0] * b_size[1]
    exponent = math.log(b_peak / s_peak) / math.log(b_px / s_px) if b_peak > s_peak > 0 else 1.0
    pixels = b_px * (target_mb / b_peak) ** (1 / exponent)
    height = int(math.sqrt(pixels * 9 / 16)) // 8 * 8
    capped = height > MAX_HEIGHT
    height = max(180, min(MAX_HEIGHT, height))
    width = (height * 16 // 9) // 8 * 8
    predicted = b_peak * (width * height / b_px) ** exponent
    return {"size": [width, height], "model": f"peak_mb = {b_peak:.1f} * (pixels / {b_px}) ** {exponent:.3f}",
            "exponent": round(exponent, 3), "predicted_mb": round(predicted, 1),
            "capped_at_height": MAX_HEIGHT if capped else None}  # fmt: skip


def reference_clip(cache: Path) -> Path:
    """The 60 s 1280x720 reference clip (scripts/build_corpus.py), built once into ``cache``."""
    reference = cache / "reference.mp4"
    if not reference.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f".reference-{os.getpid()}.mp4"
        _run([sys.executable, str(ROOT / "scripts" / "build_corpus.py"), "--reference", str(partial)])
        os.replace(partial, reference)
    return reference


def run(
    out: Path, *, limit_mb: int, control_limit_mb: int, jobs: int, control_jobs: int, target_mb: float, cache: Path
) -> dict[str, Any]:
    started = time.monotonic()
    metrics: dict[str, Any] = {"limit_mb": limit_mb, "control_limit_mb": control_limit_mb, "jobs": jobs,
                               "control_jobs": control_jobs,
                               "target_mb": target_mb, "output_s": OUTPUT_S}  # fmt: skip
    own = JobCgroups.detect()
    if own.parent is None:
        metrics.update(status="no_cgroup", reason=own.reason)
        return metrics
    parent = own.parent
    stress = cgroupfs.create_child(parent, f"montage-stress-{os.getpid()}")
    metrics.update(status="measured", cgroup_version=stress.version, cgroup_path=str(stress.path),
                   own_cgroup=own.reason)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="montage-stress-"))
    try:
        metrics["swap_notes"] = cgroupfs.set_memory_limit(stress, limit_mb * MIB)
        metrics["limit_source"] = cgroupfs.counters(stress).sources.get("limit")
        reference = reference_clip(cache)
        small_clip = make_clip(reference, SMALL, work / "small.mp4")
        cal_small = run_batch(work, "calibrate-small", stress, [small_clip])
        cal_big = run_batch(work, "calibrate-720p", stress, [reference])
        metrics["calibration"] = {"small": cal_small, "reference": cal_big}
        small_peak, big_peak = _peak_mb(cal_small["jobs"][0]), _peak_mb(cal_big["jobs"][0])
        if small_peak is None or big_peak is None or cal_big["jobs"][0]["state"] != "succeeded":
            metrics.update(status="calibration_failed", reason="a calibration job failed or had no cgroup peak")
            return metrics
        sizing = _size_for(target_mb, (SMALL, small_peak), (REFERENCE, big_peak))
        metrics["sizing"] = sizing
        size = (sizing["size"][0], sizing["size"][1])
        clip = make_clip(reference, size, work / "stress.mp4")
        # Memory admission on (the workers' default); the cgroup holds only the workers, so a smaller
        # reserve than the service default lets 3 x 600 MB estimates in at once (2048 - 200 - 1800 >= 0).
        metrics["admission"] = {"stress": MAIN_ADMISSION, "control": CONTROL_ADMISSION}
        main = run_batch(work, "stress", stress, [clip] * jobs, env=MAIN_ADMISSION)
        main["per_job_peak_mb"] = [_peak_mb(j) for j in main["jobs"]]
        metrics["stress"] = main
        cgroupfs.set_memory_limit(stress, control_limit_mb * MIB)
        control = run_batch(work, "control", stress, [clip] * control_jobs, stop_on_oom=True, env=CONTROL_ADMISSION)
        control["per_job_peak_mb"] = [_peak_mb(j) for j in control["jobs"]]
        metrics["control"] = control
    finally:
        metrics["cleanup"] = cgroupfs.remove(stress) or "removed"
        metrics["leftover_cgroups"] = [str(c.path) for c in cgroupfs.children(parent, "montage-")]
        shutil.rmtree(work, ignore_errors=True)
        metrics["duration_s"] = round(time.monotonic() - started, 1)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m montage.runtime.stress", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit-mb", type=int, default=2048)
    parser.add_argument("--control-limit-mb", type=int, default=1536)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--control-jobs", type=int, default=4, help="jobs in the negative control")
    parser.add_argument("--target-mb", type=float, default=600.0)
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "stress-cache",
                        help="where the reference clip is kept between runs")  # fmt: skip
    args = parser.parse_args(argv)

    def stop(signum: int, _frame: Any) -> None:
        raise _Stop(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        metrics = run(args.out, limit_mb=args.limit_mb, control_limit_mb=args.control_limit_mb, jobs=args.jobs,
                      control_jobs=args.control_jobs, target_mb=args.target_mb, cache=args.cache)  # fmt: skip
    except _Stop as exc:
        print(f"stress: interrupted ({exc}); cgroups removed", file=sys.stderr)
        return 130
    atomic_write_text(args.out / METRICS_NAME, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(args.out / METRICS_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
