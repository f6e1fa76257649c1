#!/usr/bin/env python3
"""Phase 4's evidence: the merged app against the split mode under the same per-router load.

``python scripts/measure_api_split.py [--rate 40] [--seconds 8] [--rounds 3] [--admin-share 0.2]
[--out docs/adr/evidence/0001-api-split.json]``

Serves both options at once with ``montage serve --workers 0`` on loopback (each on its own SQLite
file): the merged app (one process, ``/v1/public/*`` and ``/v1/admin/*``) and the split mode (the
public app in the ``montage serve`` process, the admin app in its child, on two ports).  Rounds
alternate merged, split, merged, ... so machine load drifts alike on both.  Each round is an
open-loop schedule (montage/service/loadtest.py) at ``--rate`` requests/s, a share of them admin
(``GET /v1/admin/jobs`` with an API key), the rest public (``GET /v1/public/jobs/{id}``).
Per option and router: sent, errors, p50/p99 latency; per process: CPU seconds (user+sys) spent
during the rounds, CPU ms per request, RSS and peak RSS (VmHWM); start-up time until ready.
The load is synthetic and generated on the same host; the file says so.  Exit 0 when no request
failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "adr" / "evidence" / "0001-api-split.json"


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _processes(proc_pid: int, split: bool) -> dict[str, Any]:
    import psutil

    parent = psutil.Process(proc_pid)
    found = {"public" if split else "merged": parent}
    if split:
        admin = [c for c in parent.children() if "montage.service.split" in " ".join(c.cmdline())]
        if len(admin) != 1:
            raise SystemExit(f"split mode: expected one admin process under pid {proc_pid}, found {len(admin)}")
        found["admin"] = admin[0]
    return found


def _prepare(db_url: str, work: Path) -> None:
    from montage.db import migrate

    migrate.upgrade(db_url)
    (work / "media").mkdir(parents=True, exist_ok=True)
    (work / "media" / "clip.mp4").write_bytes(b"placeholder: the API only checks the path")


def _api_key(db_url: str) -> str:
    from montage.db import keys
    from montage.db.database import Database, make_engine

    async def go() -> str:
        db = Database(make_engine(db_url))
        try:
            async with db.begin() as session:
                _row, plain = await keys.create_key(session, "measure_api_split")
                return plain
        finally:
            await db.dispose()

    return asyncio.run(go())


async def _round(
    public: str, admin: str, key: str, job_ids: list[str], rate: float, seconds: float, every: int
) -> tuple[dict[str, list[float]], dict[str, dict[str, int]], float]:
    import httpx

    from montage.service.loadtest import open_loop

    limits = httpx.Limits(max_connections=128, max_keepalive_connections=64)
    async with (
        httpx.AsyncClient(base_url=public, timeout=10, limits=limits) as pub,
        httpx.AsyncClient(base_url=admin, timeout=10, limits=limits, headers={"X-API-Key": key}) as adm,
    ):

        async def send(i: int) -> str:
            if i % every == 0:
                resp = await adm.get("/v1/admin/jobs", params={"limit": 20})
            else:
                resp = await pub.get(f"/v1/public/jobs/{job_ids[i % len(job_ids)]}")
            return "ok" if resp.status_code == 200 else f"HTTP {resp.status_code}"

        results, wall = await open_loop(send, rate, seconds)
    latencies: dict[str, list[float]] = {"public": [], "admin": []}
    errors: dict[str, dict[str, int]] = {"public": {}, "admin": {}}
    for i, kind, t in results:
        router = "admin" if i % every == 0 else "public"
        if kind == "ok":
            latencies[router].append(t)
        else:
            errors[router][kind] = errors[router].get(kind, 0) + 1
    return latencies, errors, wall


def measure(rate: float, seconds: float, rounds: int, admin_share: float) -> dict[str, Any]:
    import httpx

    from montage.core.loopback import free_port as _free_port
    from montage.service.loadtest import percentile, served_process

    every = max(1, round(1 / admin_share))
    modes = ("merged", "split")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="montage-split-") as tmp, contextlib.ExitStack() as stack:
        servers: dict[str, dict[str, Any]] = {}
        for mode in modes:
            work = Path(tmp) / mode
            url = f"sqlite+aiosqlite:///{work / 'montage.db'}"
            _prepare(url, work)
            extra: dict[str, str] = {}
            admin_port = None
            if mode == "split":
                admin_port = _free_port()
                extra["MONTAGE_SERVICE__SPLIT_ADMIN_PORT"] = str(admin_port)
            started = time.perf_counter()
            base, proc = stack.enter_context(served_process(url, work, extra))
            startup_s = time.perf_counter() - started
            admin_base = f"http://127.0.0.1:{admin_port}" if admin_port else base
            key = _api_key(url)
            job_ids = [
                httpx.post(f"{base}/v1/public/jobs", json={"path": "clip.mp4", "duration": 10}).json()["id"]
                for _ in range(50)
            ]
            # The other option's routes must not answer here: that is what the split changes.
            probe = httpx.get(f"{base}/v1/admin/jobs", headers={"X-API-Key": key}).status_code
            servers[mode] = {
                "public": base,
                "admin": admin_base,
                "key": key,
                "jobs": job_ids,
                "procs": _processes(proc.pid, mode == "split"),
                "startup_s": round(startup_s, 3),
                "admin_on_public_port_status": probe,
                "lat": {"public": [], "admin": []},
                "err": {"public": {}, "admin": {}},
                "cpu": {},
                "wall": 0.0,
            }
            asyncio.run(_round(base, admin_base, key, job_ids, 20, 1.0, every))  # warm-up
        for _ in range(rounds):
            for mode in modes:
                s = servers[mode]
                before = {name: p.cpu_times() for name, p in s["procs"].items()}
                lat, err, wall = asyncio.run(_round(s["public"], s["admin"], s["key"], s["jobs"], rate, seconds, every))
                for name, p in s["procs"].items():
                    t = p.cpu_times()
                    used = (t.user - before[name].user) + (t.system - before[name].system)
                    s["cpu"][name] = s["cpu"].get(name, 0.0) + used
                for router in ("public", "admin"):
                    s["lat"][router] += lat[router]
                    for kind, n in err[router].items():
                        s["err"][router][kind] = s["err"][router].get(kind, 0) + n
                s["wall"] += wall
        for mode in modes:
            s = servers[mode]
            routers = {}
            for router in ("public", "admin"):
                lat = s["lat"][router]
                n_err = sum(s["err"][router].values())
                routers[router] = {
                    "sent": len(lat) + n_err,
                    "ok": len(lat),
                    "errors": n_err,
                    "error_kinds": dict(sorted(s["err"][router].items())),
                    "p50_ms": round(percentile(lat, 50) * 1000, 2),
                    "p99_ms": round(percentile(lat, 99) * 1000, 2),
                }
            total_ok = sum(r["ok"] for r in routers.values())
            processes = {}
            for name, p in s["procs"].items():
                cpu = s["cpu"][name]
                processes[name] = {
                    "pid": p.pid,
                    "cpu_s": round(cpu, 3),
                    "cpu_pct_of_one_core": round(100 * cpu / s["wall"], 1),
                    "rss_mb": round(p.memory_info().rss / 2**20, 1),
                    "peak_rss_mb": _peak_rss_mb(p.pid),
                }
            cpu_total = sum(p["cpu_s"] for p in processes.values())
            out[mode] = {
                "processes": processes,
                "routers": routers,
                "startup_s": s["startup_s"],
                "admin_on_public_port_status": s["admin_on_public_port_status"],
                "cpu_s_total": round(cpu_total, 3),
                "cpu_ms_per_request": round(1000 * cpu_total / total_ok, 3) if total_ok else None,
                "rss_mb_total": round(sum(p["rss_mb"] for p in processes.values()), 1),
                "throughput_rps": round(total_ok / s["wall"], 1),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="measure_api_split.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second per round (default 40)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each round (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per option, interleaved (default 3)")
    parser.add_argument("--admin-share", type=float, default=0.2, help="share of admin requests (default 0.2)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"evidence file (default {DEFAULT_OUT.relative_to(ROOT)})"
    )
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 500 or not 0 < args.seconds <= 120 or not 1 <= args.rounds <= 20:
        parser.error("--rate must be in (0, 500], --seconds in (0, 120], --rounds in 1..20")
    if not 0 < args.admin_share <= 1:
        parser.error("--admin-share must be in (0, 1]")

    from montage.core.files import atomic_write_text
    from montage.ops.bundle import utc_now
    from montage.ops.fingerprint import git_state, host_fingerprint

    load_before = [round(x, 2) for x in os.getloadavg()]
    date = utc_now()
    git = git_state(ROOT)  # the code being measured: before the run, not when the file is written
    modes = measure(args.rate, args.seconds, args.rounds, args.admin_share)
    evidence = {
        "what": "phase 4: merged app vs split mode (separate public and admin ASGI apps and processes)",
        "synthetic": True,
        "load": "synthetic local load: open-loop HTTP on loopback from a generator on the same host; "
        "not production traffic",
        "date": date,
        "git": git,
        "host": {**host_fingerprint(), "platform": platform.platform()},
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "command": f"python scripts/measure_api_split.py --rate {args.rate:g} --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --admin-share {args.admin_share:g}",
        "config": {
            "rate_rps": args.rate,
            "seconds_per_round": args.seconds,
            "rounds": args.rounds,
            "admin_share": round(1 / max(1, round(1 / args.admin_share)), 3),
            "database": "sqlite",
            "public_request": "GET /v1/public/jobs/{id}",
            "admin_request": "GET /v1/admin/jobs?limit=20",
            "workers": 0,
        },
        "modes": modes,
    }
    atomic_write_text(args.out, json.dumps(evidence, indent=2) + "\n")
    for mode, m in modes.items():
        r = m["routers"]
        print(
            f"{mode:6}  public p50 {r['public']['p50_ms']} ms p99 {r['public']['p99_ms']} ms  "
            f"admin p50 {r['admin']['p50_ms']} ms p99 {r['admin']['p99_ms']} ms  "
            f"errors {r['public']['errors'] + r['admin']['errors']}  cpu {m['cpu_ms_per_request']} ms/req  "
            f"rss {m['rss_mb_total']} MB  start-up {m['startup_s']} s  "
            f"admin on public port: HTTP {m['admin_on_public_port_status']}"
        )
    print(f"wrote {args.out}")
    failed = any(r["errors"] for m in modes.values() for r in m["routers"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
