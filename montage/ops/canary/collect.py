"""Collect a local canary: baseline (a git ref in a temporary worktree) and candidate (the working
tree), each served by ``montage serve --workers 0`` on loopback, sent the same interleaved traffic.

Both servers run from the same interpreter with cwd and PYTHONPATH at their own tree, each with its
own SQLite database, media root and flags file in a temporary directory.  Request ``i`` of the plan
goes to both sides back to back (the side that goes first alternates), so both see the same
neighbour noise.  Per side we keep every request's kind, status (0 = unanswered) and client-side
latency, a ``/metrics`` scrape before and after the traffic, and the server process tree's CPU time
and peak RSS (psutil) against the usable CPUs and the memory limit (cgroup v2 / v1 when one is set,
else the host's memory; the document says which).  The load is synthetic.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from montage.core import cgroup, loopback
from montage.core import git as core_git
from montage.errors import MontageError
from montage.ops.canary.judge import SYNTHETIC_NOTE

KINDS = ("health", "ready", "submit", "status", "missing")
UNSET_PREFIXES = ("MONTAGE_", "COV_", "COVERAGE_")  # the outer run's settings and coverage never leak in


@dataclass
class Side:
    name: str
    tree: Path
    work: Path
    ref: str
    commit: str
    base: str = ""
    server: loopback.Server | None = None
    job_ids: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    rss_peak: int = 0


def _env(side: Side) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(UNSET_PREFIXES)}
    env.update(
        {
            "PYTHONPATH": str(side.tree),
            "MONTAGE_DB__URL": f"sqlite+aiosqlite:///{side.work / 'montage.db'}",
            "MONTAGE_DATA_DIR": str(side.work / "data"),
            "MONTAGE_SERVICE__MEDIA_ROOT": str(side.work / "media"),
            "MONTAGE_LOG_LEVEL": "WARNING",
            "MONTAGE_OPS__FLAGS_FILE": str(side.work / "flags.json"),
            "USE_SETTINGS_V2": "true",
            "MONTAGE_SERVICE__WORKERS": "0",
        }
    )
    return env


def _start(side: Side, timeout_s: float) -> None:
    (side.work / "media").mkdir(parents=True, exist_ok=True)
    (side.work / "media" / "clip.mp4").write_bytes(b"canary placeholder: the API only checks the path")
    port = loopback.free_port()
    side.base = f"http://127.0.0.1:{port}"
    try:
        side.server = loopback.start(
            [sys.executable, "-m", "montage", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "0"],
            port=port, ready_path="/v1/public/ready", log=side.work / "serve.log", cwd=side.tree, env=_env(side),
            unset_prefixes=UNSET_PREFIXES,
            timeout_s=timeout_s, name=f"{side.name}: montage serve in {side.tree}",
        )  # fmt: skip
    except loopback.NotReady as exc:
        raise MontageError(str(exc)) from None


def stderr_tail(side: Side, lines: int = 15) -> str:
    try:
        text = (side.work / "serve.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _stop(side: Side) -> int | None:
    return None if side.server is None else side.server.stop(grace_s=30.0)


def _tree(pid: int) -> list[Any]:
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _cpu_seconds(pid: int) -> float:
    import psutil

    total = 0.0
    for p in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _rss(pid: int) -> int:
    import psutil

    total = 0
    for p in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def memory_limit() -> tuple[int, str]:
    """The memory limit of this process: its cgroup's (the binding level up the tree) when one is set,
    else the host's total memory."""
    import psutil

    found = cgroup.read_memory_limit()
    if isinstance(found, cgroup.CgroupMemory):
        return found.limit_bytes, found.source
    return int(psutil.virtual_memory().total), f"host total memory ({found.reason})"


def usable_cpus() -> tuple[float, str]:
    quota = cgroup.read_cpu_quota()
    if quota is not None:
        return quota
    return float(len(os.sched_getaffinity(0))), "sched_getaffinity"


def scrape(base: str) -> dict[str, Any]:
    """``import_errors_total`` and the process metrics from ``/metrics`` (or the error)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        resp = httpx.get(f"{base}/metrics", timeout=10)
    except httpx.HTTPError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if resp.status_code != 200:
        return {"error": f"/metrics answered HTTP {resp.status_code}"}
    out: dict[str, Any] = {}
    by_module: dict[str, float] = {}
    for fam in text_string_to_metric_families(resp.text):
        for s in fam.samples:
            if s.name == "import_errors_total":
                if s.labels.get("module"):
                    by_module[s.labels["module"]] = s.value
                out["import_errors_total"] = out.get("import_errors_total", 0) + int(s.value)
            elif s.name in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
                out[s.name] = s.value
    out["import_errors_by_module"] = by_module
    return out


def _request(client: Any, side: Side, kind: str, i: int) -> None:
    import httpx

    started = time.perf_counter()
    status = 0
    try:
        if kind == "health":
            resp = client.get(f"{side.base}/v1/public/health")
        elif kind == "ready":
            resp = client.get(f"{side.base}/v1/public/ready")
        elif kind == "submit":
            resp = client.post(f"{side.base}/v1/public/jobs", json={"path": "clip.mp4", "duration": 10})
            if resp.status_code == 202:
                side.job_ids.append(str(resp.json()["id"]))
        elif kind == "status" and side.job_ids:
            resp = client.get(f"{side.base}/v1/public/jobs/{side.job_ids[i % len(side.job_ids)]}")
        else:  # unknown id: a 404 the service must answer quickly
            resp = client.get(f"{side.base}/v1/public/jobs/00000000-0000-0000-0000-{i:012d}")
        status = resp.status_code
    except httpx.HTTPError:
        status = 0
    side.kinds.append(kind)
    side.status.append(status)
    side.latency_s.append(time.perf_counter() - started)


def collect(
    repo: Path,
    *,
    baseline_ref: str = "HEAD",
    requests: int = 600,
    max_duration_s: float = 40.0,
    startup_timeout_s: float = 60.0,
    warmup: int = 20,
) -> dict[str, Any]:
    """Run the local canary and return the ``canary_metrics.json`` document."""
    import httpx

    cpus, cpus_how = usable_cpus()
    mem_limit, mem_how = memory_limit()
    with (
        tempfile.TemporaryDirectory(prefix="montage-canary-") as tmp,
        core_git.temporary_worktree(repo, baseline_ref, prefix="montage-canary-", name="baseline-tree") as worktree,
    ):
        state = core_git.repo_state(repo)
        head, dirty = state.commit or "", bool(state.dirty)
        sides = [
            Side("baseline", worktree.path, Path(tmp) / "baseline", baseline_ref, worktree.commit),
            Side("candidate", repo, Path(tmp) / "candidate", "working tree", head),
        ]
        for s in sides:
            s.work.mkdir()
        docs: dict[str, dict[str, Any]] = {}
        try:
            for s in sides:
                _start(s, startup_timeout_s)
            with httpx.Client(timeout=10) as client:
                for i in range(warmup):  # not recorded: first requests pay imports and cache fills
                    for s in sides:
                        _request(client, s, KINDS[i % len(KINDS)], i)
                for s in sides:
                    s.kinds.clear()
                    s.status.clear()
                    s.latency_s.clear()
                before = {s.name: scrape(s.base) for s in sides}
                cpu0 = {s.name: _cpu_seconds(s.server.proc.pid) for s in sides if s.server}
                started = time.monotonic()
                for i in range(requests):
                    if time.monotonic() - started > max_duration_s:
                        break
                    order = sides if i % 2 == 0 else sides[::-1]
                    for s in order:
                        _request(client, s, KINDS[i % len(KINDS)], i)
                    if i % 25 == 0:
                        for s in sides:
                            if s.server:
                                s.rss_peak = max(s.rss_peak, _rss(s.server.proc.pid))
                wall = time.monotonic() - started
                for s in sides:
                    if s.server is None:
                        continue
                    s.rss_peak = max(s.rss_peak, _rss(s.server.proc.pid))
                    cpu = _cpu_seconds(s.server.proc.pid) - cpu0[s.name]
                    docs[s.name] = {
                        "tree": "temporary worktree" if s.name == "baseline" else str(s.tree),
                        "ref": s.ref,
                        "commit": s.commit,
                        "scrape_before": before[s.name],
                        "scrape_after": scrape(s.base),
                        "resources": {
                            "cpu_seconds": round(cpu, 4),
                            "wall_s": round(wall, 4),
                            "cpu_percent": round(100.0 * cpu / (wall * cpus), 3),
                            "cpu_how": f"server tree CPU time / (wall {wall:.1f} s x {cpus:g} CPUs: {cpus_how})",
                            "rss_peak_bytes": s.rss_peak,
                            "mem_percent": round(100.0 * s.rss_peak / mem_limit, 3),
                            "mem_how": f"peak RSS of the server process tree / {mem_limit} bytes ({mem_how})",
                        },
                        "samples": {
                            "kind": s.kinds,
                            "status": s.status,
                            "latency_s": [round(x, 7) for x in s.latency_s],
                        },
                    }
        finally:
            for s in sides:
                rc = _stop(s)
                if s.name in docs:
                    docs[s.name]["serve_exit_code"] = rc
                    docs[s.name]["serve_log_tail"] = stderr_tail(s)
    return {
        "schema": 1,
        "source": "local",
        "synthetic": True,
        "note": SYNTHETIC_NOTE,
        "candidate_dirty": dirty,
        "config": {
            "baseline_ref": baseline_ref,
            "requests": requests,
            "max_duration_s": max_duration_s,
            "warmup": warmup,
            "kinds": list(KINDS),
        },
        "limits": {"cpus": cpus, "cpus_how": cpus_how, "mem_bytes": mem_limit, "mem_how": mem_how},
        "sides": docs,
    }
