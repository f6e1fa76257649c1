"""Load test of the HTTP service: job-status reads and submissions at fixed request rates.

Starts ``montage serve --workers 0`` (real HTTP on loopback; no workers, so only the API and the
database are measured) against SQLite and/or a throwaway PostgreSQL, sends an open-loop schedule
(request *i* leaves at ``start + i / rate`` whether or not earlier ones finished, so a slow server
shows up as latency instead of hiding behind a lower rate), and prints throughput and p50/p99.
The load generator shares the machine with the server: figures are for comparing backends and
commits on the same host, not absolute capacity.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from montage.errors import MontageError


@dataclass
class RunResult:
    backend: str
    scenario: str
    rate: float
    sent: int
    ok: int
    errors: int
    throughput: float
    p50_ms: float
    p99_ms: float
    error_kinds: dict[str, int]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@contextmanager
def served_process(
    db_url: str, workdir: Path, extra_env: Mapping[str, str] | None = None, ready_path: str = "/v1/public/ready"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``montage serve --workers 0`` on a free port; yields its base URL and process."""
    from montage.core import loopback

    port = loopback.free_port()
    env = {"MONTAGE_DB__URL": db_url, "MONTAGE_DATA_DIR": str(workdir / "data"),
           "MONTAGE_SERVICE__MEDIA_ROOT": str(workdir / "media"), "MONTAGE_LOG_LEVEL": "WARNING",
           "MONTAGE_OPS__FLAGS_FILE": str(workdir / "flags.json"), "USE_SETTINGS_V2": "true"}  # fmt: skip
    env.update(extra_env or {})
    try:
        with loopback.start(
            [sys.executable, "-m", "montage", "serve", "--port", str(port), "--workers", "0"],
            port=port, ready_path=ready_path, log=workdir / f"serve-{port}.log", cwd=workdir, env=env,
            unset_prefixes=("MONTAGE_",),
        ) as server:  # fmt: skip
            yield server.base, server.proc
    except loopback.NotReady as exc:
        raise MontageError(str(exc)) from None


@contextmanager
def served(db_url: str, workdir: Path) -> Iterator[str]:
    """``montage serve --workers 0`` on a free port; yields its base URL."""
    with served_process(db_url, workdir) as (base, _proc):
        yield base


async def open_loop(
    send: Callable[[int], Awaitable[str]], rate: float, seconds: float
) -> tuple[list[tuple[int, str, float]], float]:
    """Open-loop schedule: call ``send(i)`` at ``start + i / rate``; (i, kind, seconds) per request, and the wall time.

    ``send`` returns ``"ok"`` or an error kind (``"HTTP 500"``, an exception name).
    """
    import httpx

    n = max(1, int(rate * seconds))
    results: list[tuple[int, str, float]] = []

    async def one(i: int) -> None:
        started = time.perf_counter()
        try:
            kind = await send(i)
        except httpx.HTTPError as exc:
            kind = type(exc).__name__  # e.g. ReadTimeout: the generator gave up after 10 s
        results.append((i, kind, time.perf_counter() - started))

    start = time.perf_counter()
    tasks = []
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return results, time.perf_counter() - start


async def _open_loop(
    base: str, scenario: str, rate: float, seconds: float, job_ids: list[str]
) -> tuple[list[float], dict[str, int], float]:
    import httpx

    limits = httpx.Limits(max_connections=128, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:

        async def send(i: int) -> str:
            if scenario == "status":
                resp = await client.get(f"/v1/public/jobs/{job_ids[i % len(job_ids)]}")
                return "ok" if resp.status_code == 200 else f"HTTP {resp.status_code}"
            resp = await client.post("/v1/public/jobs", json={"path": "clip.mp4", "duration": 10})
            return "ok" if resp.status_code == 202 else f"HTTP {resp.status_code}"

        results, wall = await open_loop(send, rate, seconds)
    latencies = [t for _, kind, t in results if kind == "ok"]
    errors: dict[str, int] = {}
    for _, kind, _t in results:
        if kind != "ok":
            errors[kind] = errors.get(kind, 0) + 1
    return latencies, errors, wall


def run_backend(backend: str, db_url: str, rates: list[float], seconds: float, workdir: Path) -> list[RunResult]:
    import httpx

    from montage.db import migrate

    migrate.upgrade(db_url)
    (workdir / "media").mkdir(parents=True, exist_ok=True)
    (workdir / "media" / "clip.mp4").write_bytes(b"placeholder: the API only checks the path")
    results = []
    with served(db_url, workdir) as base:
        job_ids = [
            httpx.post(f"{base}/v1/public/jobs", json={"path": "clip.mp4", "duration": 10}).json()["id"]
            for _ in range(50)
        ]
        asyncio.run(_open_loop(base, "status", 20, 1.0, job_ids))  # warm-up
        for rate in rates:
            for scenario in ("status", "submit"):
                latencies, errors, wall = asyncio.run(_open_loop(base, scenario, rate, seconds, job_ids))
                n_errors = sum(errors.values())
                results.append(RunResult(
                    backend, scenario, rate, len(latencies) + n_errors, len(latencies), n_errors,
                    round(len(latencies) / wall, 1), round(percentile(latencies, 50) * 1000, 1),
                    round(percentile(latencies, 99) * 1000, 1), dict(sorted(errors.items())),
                ))  # fmt: skip
                print(_row(results[-1]), flush=True)
    return results


HEADER = "| backend | scenario | target req/s | sent | ok | errors | throughput req/s | p50 ms | p99 ms |"


def _row(r: RunResult) -> str:
    errors = f"{r.errors} ({', '.join(f'{k}: {n}' for k, n in r.error_kinds.items())})" if r.errors else "0"
    return (f"| {r.backend} | {r.scenario} | {r.rate:g} | {r.sent} | {r.ok} | {errors} | {r.throughput} | "
            f"{r.p50_ms} | {r.p99_ms} |")  # fmt: skip


def main(backends: list[str], rates: list[float], seconds: float, out: Path | None) -> int:
    from montage.db.pgtemp import PgCluster, find_bindir

    print(HEADER)
    print("|---|---|---|---|---|---|---|---|---|")
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="montage-load-") as tmp:
        work = Path(tmp)
        if "sqlite" in backends:
            url = f"sqlite+aiosqlite:///{work / 'sqlite' / 'montage.db'}"
            results += run_backend("sqlite", url, rates, seconds, work / "sqlite")
        if "postgresql" in backends:
            with PgCluster(find_bindir(), standby=False) as pg:
                db = pg.new_database()
                results += run_backend("postgresql", pg.url(db), rates, seconds, work / "postgresql")
    if out is not None:
        from montage.core.files import atomic_write_text

        atomic_write_text(out, json.dumps([asdict(r) for r in results], indent=2) + "\n")
    failed = [r for r in results if r.errors]
    return 1 if failed else 0


def cli(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="load_test.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rates", default="25,100", help="comma-separated request rates per second (default 25,100)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each run (default 8)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error(f"--rates {args.rates!r} must be numbers separated by commas, e.g. 25,100")
    if not rates or any(r <= 0 for r in rates) or not 0 < args.seconds <= 120:
        parser.error("--rates must be positive and --seconds in (0, 120]")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    try:
        return main(backends, rates, args.seconds, args.out)
    except MontageError as exc:
        print(f"load_test.py: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
