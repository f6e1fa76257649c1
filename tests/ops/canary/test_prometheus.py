"""The prometheus source: a real Prometheus on loopback scraping two real ``montage serve`` sides."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from montage.core import loopback
from montage.ops.canary import collect as local
from montage.ops.canary import prometheus, traffic
from montage.ops.canary.judge import judge
from montage.ops.checks.canary import Params

REPO = Path(__file__).resolve().parents[3]
SLOS = Params(resamples=500, min_samples=100, min_windows=5)
SLOW_PATCH = """    @app.middleware("http")
    async def slower(request: Request, call_next: Any) -> Response:
        import asyncio
        import time

        started = time.perf_counter()
        response = await call_next(request)
        await asyncio.sleep(0.3 * (time.perf_counter() - started) + 0.002)
        return response

"""
ANCHOR = "    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics)\n"


def _slow_clone(tmp_path: Path) -> Path:
    dest = tmp_path / "slow"
    subprocess.run(["git", "clone", "-q", "--local", "--no-hardlinks", str(REPO), str(dest)], check=True,
                   timeout=120, capture_output=True)  # fmt: skip
    app = dest / "montage" / "service" / "app.py"
    text = app.read_text(encoding="utf-8")
    assert ANCHOR in text
    app.write_text(text.replace(ANCHOR, SLOW_PATCH + ANCHOR), encoding="utf-8")
    return dest


@contextlib.contextmanager
def _sides(tmp_path: Path, candidate_tree: Path) -> Iterator[list[local.Side]]:
    sides = [local.Side("baseline", REPO, tmp_path / "b", "HEAD", "", {}),
             local.Side("candidate", candidate_tree, tmp_path / "c", "tree", "", {})]  # fmt: skip
    try:
        for s in sides:
            s.work.mkdir(parents=True)
            s.env_set = local.side_env(s.tree, s.work, 0, {})
            local._start(s, 0, 90, REPO / local.CLIP_SOURCE)
        yield sides
    finally:
        for s in sides:
            if s.server is not None:
                s.server.stop(grace_s=10)


@contextlib.contextmanager
def _prometheus(tmp_path: Path, sides: list[local.Side]) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian package prometheus; scripts/run_tests.py installs it)")
    targets = "\n".join(
        f"  - job_name: {s.name}\n    static_configs:\n      - targets: ['{s.base.removeprefix('http://')}']\n"
        f"        labels: {{side: {s.name}}}"
        for s in sides
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n{targets}\n", encoding="utf-8")
    port = loopback.free_port()
    server = loopback.start(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        port=port, ready_path="/-/ready", log=tmp_path / "prometheus.log", timeout_s=60, name="prometheus",
    )  # fmt: skip
    try:
        yield server.base
    finally:
        server.stop(grace_s=10)


def _traffic(sides: list[local.Side], seconds: float) -> None:
    import httpx

    ios = [s.io for s in sides if s.io is not None]
    reads = [k for k in traffic.READS if k != "download"]
    with httpx.Client(timeout=30) as client:
        started, i = time.monotonic(), 0
        while time.monotonic() - started < seconds:
            for io in ios if i % 2 == 0 else ios[::-1]:
                traffic.request(client, io, reads[i % len(reads)], i)
            i += 1


def _judged(tmp_path: Path, candidate_tree: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict[str, Any]]:
    with _sides(tmp_path, candidate_tree) as sides, _prometheus(tmp_path, sides) as base:
        time.sleep(3)  # a first scrape of both sides before the window starts
        start = time.time()
        _traffic(sides, 36)
        time.sleep(3)  # the last scrape
        monkeypatch.setenv(prometheus.URL_VAR, base)
        monkeypatch.delenv(prometheus.TOKEN_VAR, raising=False)
        doc = prometheus.collect({"baseline": 'side="baseline"', "candidate": 'side="candidate"'},
                                 window_s=time.time() - start, step_s=4.0)  # fmt: skip
    return judge(doc, SLOS), doc


def _slo(result: Any, name: str) -> Any:
    return {r.name: r for r in result.slos}[name]


@pytest.mark.slow
def test_unchanged_pair_passes_and_slower_candidate_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    same, doc = _judged(tmp_path / "same", REPO, monkeypatch)
    assert doc["queries"]["candidate"]["p99_latency"].count('side="candidate"') == 1
    text = same.text(doc)
    print(text)  # the figures, for `pytest -s`
    assert _slo(same, "p99_latency_ratio").verdict.value != "FAIL", text
    assert _slo(same, "import_errors").verdict.value == "PASS", text
    slow, doc = _judged(tmp_path / "slow", _slow_clone(tmp_path), monkeypatch)
    print(slow.text(doc))
    # FAIL seen at a load average of about 20; at 25 on 2 cores it was INCONCLUSIVE (1.14 [0.76, 1.97]):
    # never PASS, and the 5xx SLO decided from a real zero-5xx series
    latency = _slo(slow, "p99_latency_ratio")
    assert latency.verdict.value in ("FAIL", "INCONCLUSIVE") and latency.value["ratio"] > 1.0, slow.text(doc)
    assert (
        _slo(slow, "error_rate_5xx").verdict.value != "INCONCLUSIVE"
        or "empty" not in _slo(slow, "error_rate_5xx").detail
    )


def test_unreachable_401_and_500_are_inconclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # nothing listens on a fresh free port: unreachable
    monkeypatch.setenv(prometheus.URL_VAR, f"http://127.0.0.1:{loopback.free_port()}")
    doc = prometheus.collect({"baseline": 'side="b"', "candidate": 'side="c"'}, window_s=60, step_s=10)
    result = judge(doc, SLOS)
    assert result.verdict == "INCONCLUSIVE"
    assert all(r.verdict.value == "INCONCLUSIVE" and "unreachable" in r.detail for r in result.slos), result.text(doc)


def test_empty_partial_nan_and_missing_side_are_inconclusive() -> None:
    def answer(values: list[list[Any]]) -> dict[str, Any]:
        return {"data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}] if values else []}}

    full = [[1000.0 + 10 * k, "0.01"] for k in range(7)]
    series = {slo: answer(full) for slo in prometheus.QUERIES}
    series["requests"] = answer([[t, "100"] for t, _ in full])
    series["errors_5xx"] = answer([[t, "0"] for t, _ in full])
    series["import_errors"] = answer([[t, "0"] for t, _ in full])
    doc: dict[str, Any] = {"source": "prometheus", "note": "test", "queries": {},
                           "prometheus": {"start": 1000.0, "end": 1060.0, "step_s": 10.0},
                           "series": {"baseline": dict(series), "candidate": dict(series)}}  # fmt: skip
    slos = Params(resamples=500, min_samples=100, min_windows=5)
    assert judge(doc, slos).verdict == "PASS"  # the control: a complete document passes
    cases = {
        "empty series": answer([]),
        "partial series": answer(full[:3]),
        "non-finite value": answer([[t, "NaN"] for t, _ in full]),
    }
    for why, bad in cases.items():
        broken = {**doc, "series": {"baseline": dict(series), "candidate": {**series, "p99_latency": bad}}}
        latency = _slo(judge(broken, slos), "p99_latency_ratio")
        assert latency.verdict.value == "INCONCLUSIVE" and why in latency.detail, latency.detail
    missing = {**doc, "series": {"baseline": dict(series)}}
    assert all(r.verdict.value == "INCONCLUSIVE" for r in judge(missing, slos).slos)
    unauthorized = {"error": "Prometheus answered HTTP 401: unauthorized"}
    refused = {**doc, "series": {"baseline": dict(series), "candidate": {**series, "requests": unauthorized}}}
    verdicts = {r.name: r for r in judge(refused, slos).slos}
    assert verdicts["error_rate_5xx"].verdict.value == "INCONCLUSIVE" and "401" in verdicts["error_rate_5xx"].detail
