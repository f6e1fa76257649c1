"""/metrics: per-app registry, route-template latency, jobs by state and duration, imports, process, DB reads."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from montage.service.imports import optional_import
from tests.service.conftest import Live, ServerThread, make_loaded


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_cover_requests_jobs_imports_process_and_db(live: Live) -> None:
    live.client.get("/v1/public/jobs/does-not-exist")
    live.client.get("/v1/public/jobs/another-one")
    (live.tmp_path / "media" / "a.mp4").write_bytes(b"x")
    live.client.post("/v1/public/jobs", json={"path": "a.mp4", "duration": 10})
    assert optional_import("montage_definitely_missing_module") is None
    text = live.client.get("/metrics").text
    s = _samples(text)
    route = frozenset({("route", "/v1/public/jobs/{job_id}"), ("method", "GET"), ("status", "404")})
    assert s[("http_request_duration_seconds_count", route)] == 2  # by template, not by raw path
    assert "does-not-exist" not in text
    assert s[("http_requests_in_flight", frozenset())] >= 1  # the scrape itself is in flight
    assert s[("montage_jobs", frozenset({("state", "queued")}))] == 1
    assert s[("montage_db_up", frozenset())] == 1
    assert s[("import_errors_total", frozenset({("module", "montage_definitely_missing_module")}))] >= 1
    assert s[("process_resident_memory_bytes", frozenset())] > 10e6
    assert s[("process_cpu_seconds_total", frozenset())] > 0
    assert s[("montage_db_reads_total", frozenset({("target", "primary")}))] > 0
    assert s[("montage_db_reads_total", frozenset({("target", "replica")}))] == 0
    assert re.search(r"^montage_db_writes_total [1-9]", text, re.M)


def test_two_apps_have_separate_registries(tmp_path: Path, live: Live) -> None:
    from montage.service.app import create_app

    (tmp_path / "other").mkdir()
    with ServerThread(create_app(make_loaded(tmp_path / "other", live.db_url))) as base:
        httpx.get(f"{base}/v1/public/health")
        text = httpx.get(f"{base}/metrics").text
    health = frozenset({("route", "/v1/public/health"), ("method", "GET"), ("status", "200")})
    assert _samples(text)[("http_request_duration_seconds_count", health)] == 1
    assert ("http_request_duration_seconds_count", health) not in _samples(live.client.get("/metrics").text)


def test_latency_buckets_resolve_a_20_percent_p99_change(live: Live) -> None:
    """Buckets at most 10 % apart from 1 ms to 4 s, as /metrics exposes them (not the constant)."""
    live.client.get("/v1/public/health")
    text = live.client.get("/metrics").text
    health = {("route", "/v1/public/health"), ("method", "GET"), ("status", "200")}
    bounds = sorted(
        float(s.labels["le"])
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "http_request_duration_seconds_bucket" and health <= set(s.labels.items())
        and s.labels["le"] != "+Inf"
    )  # fmt: skip
    inside = [b for b in bounds if 0.001 <= b <= 4.0]
    assert inside[0] == 0.001 and inside[-1] > 3.9
    assert max(hi / lo for lo, hi in zip(inside, inside[1:], strict=False)) <= 1.10


def test_a_job_failed_by_an_import_error_is_counted(live: Live) -> None:
    import sqlalchemy

    (live.tmp_path / "media" / "b.mp4").write_bytes(b"x")
    job = live.client.post("/v1/public/jobs", json={"path": "b.mp4", "duration": 10}).json()["id"]
    error = "renderer exited 1: Traceback (most recent call last):\nModuleNotFoundError: No module named 'av'"
    before = _samples(live.client.get("/metrics").text).get(("import_errors_total", frozenset({("module", "av")})), 0)
    engine = sqlalchemy.create_engine(live.db_url.replace("+aiosqlite", ""))
    with engine.begin() as conn:  # what the worker records when the renderer dies of the ImportError
        conn.execute(sqlalchemy.text("UPDATE jobs SET state='failed', error=:e WHERE id=:i"), {"e": error, "i": job})
    engine.dispose()
    after = _samples(live.client.get("/metrics").text)[("import_errors_total", frozenset({("module", "av")}))]
    assert after == before + 1
