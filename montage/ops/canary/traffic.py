"""The canary's traffic: one request plan sent to both sides, and the real jobs they render.

The plan cycles through public reads (health, ready, job status, an unknown job), admin reads
(``/v1/admin/stats``, ``/v1/admin/jobs``, with the side's own API key) and downloads (the result of
a job that succeeded, else its plan, which answers 409 until then).  ``jobs`` submissions are spread
evenly over the plan, alternating a JSON submission of a file in the media root and a multipart
upload of the same clip, due by time (not by request count, which the machine's load decides), so
both sides render the same real jobs while they serve the reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READS = ("health", "ready", "status", "missing", "admin_stats", "download", "admin_jobs")
KINDS = (*READS, "submit", "upload")
CLIP = "clip.mp4"
JOB_DURATION_S = 2.0  # the shortest montage the API accepts is enough to run probe, analysis and render


@dataclass
class Traffic:
    """One side's endpoint, key and what it answered."""

    base: str
    key: str
    clip: Path
    job_ids: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    succeeded: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.kinds.clear()
        self.status.clear()
        self.latency_s.clear()


def kind_at(i: int, elapsed_s: float, submitted: int, jobs: int, duration_s: float, requests: int = 0) -> str:
    """Request ``i``'s kind: a job submission when the next one is due (``jobs`` spread evenly over
    ``duration_s`` of traffic, or over the ``requests`` rounds when those run out first on a fast
    machine, alternating JSON and upload), else the next read of the cycle."""
    by_time = elapsed_s >= submitted * duration_s / jobs if jobs else False
    by_count = requests > 0 and i >= submitted * requests / jobs if jobs else False
    if submitted < jobs and (by_time or by_count):
        return "submit" if submitted % 2 == 0 else "upload"
    return READS[i % len(READS)]


def request(client: Any, side: Traffic, kind: str, i: int) -> None:
    """Send one request of ``kind`` and record its status (0 = unanswered) and latency."""
    import httpx

    admin = {"X-API-Key": side.key}
    started = time.perf_counter()
    status = 0
    try:
        if kind == "health":
            resp = client.get(f"{side.base}/v1/public/health")
        elif kind == "ready":
            resp = client.get(f"{side.base}/v1/public/ready")
        elif kind == "submit":
            resp = client.post(f"{side.base}/v1/public/jobs", json={"path": CLIP, "duration": JOB_DURATION_S})
        elif kind == "upload":
            with side.clip.open("rb") as fh:
                resp = client.post(f"{side.base}/v1/public/jobs", data={"duration": str(JOB_DURATION_S)},
                                   files={"file": (CLIP, fh, "video/mp4")})  # fmt: skip
        elif kind == "status" and side.job_ids:
            resp = client.get(f"{side.base}/v1/public/jobs/{side.job_ids[i % len(side.job_ids)]}")
        elif kind == "admin_stats":
            resp = client.get(f"{side.base}/v1/admin/stats", headers=admin)
        elif kind == "admin_jobs":
            resp = client.get(f"{side.base}/v1/admin/jobs", headers=admin)
        elif kind == "download" and side.succeeded:
            resp = client.get(f"{side.base}/v1/public/jobs/{side.succeeded[i % len(side.succeeded)]}/result")
        elif kind == "download" and side.job_ids:  # nothing rendered yet: the plan answers 409 (not ready)
            resp = client.get(f"{side.base}/v1/public/jobs/{side.job_ids[i % len(side.job_ids)]}/plan")
        else:  # an unknown id: a 404 the service must answer quickly
            resp = client.get(f"{side.base}/v1/public/jobs/00000000-0000-0000-0000-{i:012d}")
        status = resp.status_code
        if kind in ("submit", "upload") and status == 202:
            side.job_ids.append(str(resp.json()["id"]))
    except httpx.HTTPError:
        status = 0
    side.kinds.append(kind)
    side.status.append(status)
    side.latency_s.append(time.perf_counter() - started)


def refresh_succeeded(client: Any, side: Traffic) -> None:
    """Which of the side's jobs have succeeded (their results are what ``download`` fetches)."""
    import httpx

    try:
        resp = client.get(f"{side.base}/v1/admin/jobs", headers={"X-API-Key": side.key})
    except httpx.HTTPError:
        return
    if resp.status_code == 200:
        done = {j["id"] for j in resp.json()["jobs"] if j["state"] == "succeeded"}
        side.succeeded = [j for j in side.job_ids if j in done]


def job_records(client: Any, side: Traffic) -> list[dict[str, Any]]:
    """Every submitted job's final state and run time (finished - started), in submission order."""
    import datetime as dt

    import httpx

    out: list[dict[str, Any]] = []
    for job_id in side.job_ids:
        try:
            resp = client.get(f"{side.base}/v1/public/jobs/{job_id}")
            body = resp.json() if resp.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            body = {}
        started, finished = body.get("started_at"), body.get("finished_at")
        duration = None
        if started and finished:
            duration = (dt.datetime.fromisoformat(finished) - dt.datetime.fromisoformat(started)).total_seconds()
        error = body.get("error")
        out.append({"id": job_id, "state": body.get("state", "unknown"),
                    "duration_s": None if duration is None else round(duration, 4),
                    "error": None if error is None else str(error)[:300]})  # fmt: skip
    return out


def wait_for_jobs(client: Any, sides: list[Traffic], deadline: float) -> None:
    """Poll until every side's jobs are finished (succeeded, failed, cancelled) or ``deadline`` passes."""
    import httpx

    finished = {"succeeded", "failed", "cancelled"}
    while time.monotonic() < deadline:
        pending = 0
        for side in sides:
            try:
                resp = client.get(f"{side.base}/v1/admin/jobs", headers={"X-API-Key": side.key})
                states = {j["id"]: j["state"] for j in resp.json()["jobs"]} if resp.status_code == 200 else {}
            except (httpx.HTTPError, ValueError):
                states = {}
            pending += sum(1 for j in side.job_ids if states.get(j) not in finished)
        if not pending:
            return
        time.sleep(0.5)
