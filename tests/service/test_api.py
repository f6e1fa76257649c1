"""The HTTP API over real HTTP on loopback: routes, auth, errors, flags, keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.service.conftest import Live, ServerThread, make_loaded


def _error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"status", "code", "message"}
    assert body["error"]["status"] == status and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return dict(body["error"])


def test_health_and_ready(live: Live) -> None:
    assert live.client.get("/v1/public/health").json() == {"status": "ok"}
    ready = live.client.get("/v1/public/ready")
    assert ready.status_code == 200 and ready.json()["revision"] == ready.json()["head"] == "0003"


def test_submit_by_path_then_status_list_cancel_retry(live: Live) -> None:
    clip = live.tmp_path / "media" / "talk.mp4"
    clip.write_bytes(b"not really a video; the worker is not running in this test")
    resp = live.client.post("/v1/public/jobs", json={"path": "talk.mp4", "duration": 20, "aspect": "9:16"})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["state"] == "queued" and job["aspect"] == "9:16" and resp.headers["location"] == job["links"]["self"]
    assert live.client.get(job["links"]["self"]).json()["id"] == job["id"]
    _error(live.client.get(job["links"]["result"]), 409, "not_ready")
    listed = live.client.get("/v1/admin/jobs", params={"state": "queued"}, headers=live.admin).json()
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    assert live.client.post(f"/v1/admin/jobs/{job['id']}/cancel", headers=live.admin).json()["state"] == "cancelled"
    _error(live.client.post(f"/v1/admin/jobs/{job['id']}/cancel", headers=live.admin), 409, "invalid_transition")
    assert live.client.post(f"/v1/admin/jobs/{job['id']}/retry", headers=live.admin).json()["state"] == "queued"
    stats = live.client.get("/v1/admin/stats", headers=live.admin).json()
    assert stats["jobs"]["queued"] == 1 and stats["db"]["backend"] == "sqlite" and stats["db"]["writes"] > 0


def test_multipart_upload_and_size_limit(live: Live) -> None:
    ok = live.client.post(
        "/v1/public/jobs", files={"file": ("clip.mp4", b"x" * 1000, "video/mp4")}, data={"duration": "15"}
    )
    assert ok.status_code == 202, ok.text
    saved = list((live.tmp_path / "data" / "uploads" / ok.json()["id"]).iterdir())
    assert [p.name for p in saved] == ["input.mp4"]
    big = live.client.post(
        "/v1/public/jobs", files={"file": ("big.mp4", b"x" * (2 * 1024 * 1024), "video/mp4")}, data={"duration": "15"}
    )
    _error(big, 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while the body streams in
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="duration"\r\n\r\n15\r\n'
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
        for _ in range(40):
            yield b"x" * 64 * 1024
        yield b"\r\n--xyz--\r\n"

    chunked = live.client.post(
        "/v1/public/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz"}
    )
    assert "request body exceeds" in _error(chunked, 413, "payload_too_large")["message"]  # stopped mid-stream
    _error(live.client.post("/v1/public/jobs", data={"duration": "15"}, files={"other": ("a", b"1")}), 422)
    _error(live.client.post("/v1/public/jobs", content=b"x", headers={"content-type": "text/plain"}), 415)


def test_paths_outside_media_root_and_bad_fields(live: Live) -> None:
    outside = live.tmp_path / "secret.mp4"
    outside.write_bytes(b"x")
    for path in ("../secret.mp4", str(outside), "/etc/passwd", "sub/../../secret.mp4"):
        _error(live.client.post("/v1/public/jobs", json={"path": path, "duration": 10}), 400)
    _error(live.client.post("/v1/public/jobs", json={"path": "missing.mp4", "duration": 10}), 400, "no_such_file")
    bad = live.client.post("/v1/public/jobs", json={"path": "a.mp4", "duration": -3, "aspect": "4:3"})
    err = _error(bad, 422, "invalid_request")
    assert "duration" in err["message"] and "aspect" in err["message"]
    _error(
        live.client.post("/v1/public/jobs", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "invalid_json",
    )


def test_unknown_job_is_404(live: Live) -> None:
    for suffix in ("", "/result", "/plan"):
        _error(live.client.get(f"/v1/public/jobs/nope{suffix}"), 404, "job_not_found")
    _error(live.client.post("/v1/admin/jobs/nope/cancel", headers=live.admin), 404)


def test_admin_auth_401_403_bearer_and_revocation(live: Live) -> None:
    _error(live.client.get("/v1/admin/flags"), 401, "unauthorized")
    _error(live.client.get("/v1/admin/flags", headers={"X-API-Key": "mtg_abc_wrong"}), 403, "forbidden")
    _error(live.client.get("/v1/admin/flags", headers={"X-API-Key": live.admin_key + "x"}), 403)
    bearer = {"Authorization": f"Bearer {live.admin_key}"}
    assert live.client.get("/v1/admin/flags", headers=bearer).status_code == 200
    created = live.client.post("/v1/admin/keys", json={"name": "ci"}, headers=live.admin)
    assert created.status_code == 201
    new = created.json()
    assert live.client.get("/v1/admin/flags", headers={"X-API-Key": new["key"]}).status_code == 200
    assert live.client.delete(f"/v1/admin/keys/{new['id']}", headers=live.admin).status_code == 204
    _error(live.client.get("/v1/admin/flags", headers={"X-API-Key": new["key"]}), 403)
    _error(live.client.delete("/v1/admin/keys/nope", headers=live.admin), 404)


def test_flags_apply_from_next_request_and_mirror_file(live: Live) -> None:
    resp = live.client.put("/v1/admin/flags/SUBMISSIONS_PAUSED", json={"value": True}, headers=live.admin)
    assert resp.json()["flags"] == {"SUBMISSIONS_PAUSED": True}
    assert json.loads((live.tmp_path / "flags.json").read_text()) == {"SUBMISSIONS_PAUSED": True}
    paused = live.client.post("/v1/public/jobs", json={"path": "x.mp4", "duration": 10})
    _error(paused, 503, "submissions_paused")
    live.client.put("/v1/admin/flags/SUBMISSIONS_PAUSED", json={"value": False}, headers=live.admin)
    _error(live.client.post("/v1/public/jobs", json={"path": "x.mp4", "duration": 10}), 400, "no_such_file")
    _error(live.client.put("/v1/admin/flags/bad%20name", json={"value": 1}, headers=live.admin), 422)


def test_config_is_masked(live: Live) -> None:
    cfg = live.client.get("/v1/admin/config", headers=live.admin).json()
    assert cfg["source"] == "settings_v2"
    assert cfg["settings"]["db.url"]["value"] == "**********"
    assert live.db_url not in json.dumps(cfg)


def test_public_key_required_by_setting(tmp_path: Path, sqlite_db_url: str) -> None:
    from montage.service.app import create_app

    app = create_app(make_loaded(tmp_path, sqlite_db_url, require_key_for_public=True))
    with ServerThread(app) as base:
        _error(httpx.get(f"{base}/v1/public/jobs/x"), 401)
        assert httpx.get(f"{base}/v1/public/health").status_code == 200


def test_database_down_is_503_not_a_hang(tmp_path: Path) -> None:
    import time

    from montage.service.app import create_app

    # A port nobody listens on: asyncpg's connect fails at once; the error must be a clear 503.
    loaded = make_loaded(tmp_path, "postgresql+asyncpg://montage@127.0.0.1:9/montage", **{})
    with ServerThread(create_app(loaded)) as base:
        started = time.monotonic()
        resp = httpx.get(f"{base}/v1/public/jobs/abc", timeout=30)
        assert time.monotonic() - started < 15
        err = _error(resp, 503, "database_unavailable")
        assert "unavailable" in err["message"] and "montage@" not in err["message"]
        ready = httpx.get(f"{base}/v1/public/ready", timeout=30)
        assert ready.status_code == 503 and ready.json()["database"] == "down"
        admin = httpx.get(f"{base}/v1/admin/flags", headers={"X-API-Key": "mtg_a_b"}, timeout=30)
        _error(admin, 503)


def test_result_and_plan_download_then_410_after_retention(live: Live, clip: Path) -> None:
    import asyncio

    from montage.db.database import Database, make_engine
    from montage.workers.executor import FfmpegTrimExecutor
    from montage.workers.worker import Worker, WorkerConfig

    with clip.open("rb") as fh:
        job = live.client.post("/v1/public/jobs", files={"file": ("c.mp4", fh)}, data={"duration": "2"}).json()
    config = WorkerConfig(worker_id="t", data_dir=live.tmp_path / "data", lease_s=5, heartbeat_s=0.5, poll_s=0.1,
                          job_timeout_s=60, drain_grace_s=5, max_attempts=3, retention_s=3600)  # fmt: skip

    async def work(retention_s: float | None = None) -> None:
        db = Database(make_engine(live.db_url))
        try:
            worker = Worker(db, FfmpegTrimExecutor(threads=1), config)
            if retention_s is None:
                await worker.run(once=True)
            else:
                expired = WorkerConfig(**{**config.__dict__, "retention_s": retention_s})
                await Worker(db, worker.executor, expired).maintenance(force=True)
        finally:
            await db.dispose()

    asyncio.run(work())
    result = live.client.get(job["links"]["result"])
    assert result.status_code == 200 and result.headers["content-type"] == "video/mp4"
    assert result.content[4:8] == b"ftyp" and len(result.content) > 1000
    assert live.client.get(job["links"]["plan"]).json()["segments"] == [{"start": 0.0, "end": 2.0}]
    asyncio.run(work(retention_s=0.0))
    _error(live.client.get(job["links"]["result"]), 410, "gone")
    _error(live.client.get(job["links"]["plan"]), 410, "gone")
