"""Admission as a user of the HTTP service sees it: 422 at submission, waiting jobs in stats and status, /metrics."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from montage.db.database import Database, make_engine
from montage.runtime.admission import Admission, Waiting
from montage.runtime.memory_manager import read_memory
from montage.settings import Settings
from tests.runtime.test_admission import memory_settings
from tests.service.conftest import Live, live, sqlite_db_url  # noqa: F401 - fixtures

MIB = 1024 * 1024


def _claim(db_url: str, settings: Settings, worker_id: str, machine: str = "m1") -> object:
    async def go() -> object:
        db = Database(make_engine(db_url))
        try:
            return await Admission(settings, machine=machine).claim(db, worker_id, 30)
        finally:
            await db.dispose()

    return asyncio.run(go())


def _metrics(server: Live) -> dict[str, float]:
    text = server.client.get("/metrics").text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def _submit(server: Live, name: str = "in.mp4") -> tuple[int, dict[str, object]]:
    (server.tmp_path / "media" / name).write_bytes(b"not really a video")
    resp = server.client.post("/v1/public/jobs", json={"path": name, "duration": 5}, headers=server.admin)
    return resp.status_code, resp.json()


def test_a_job_larger_than_every_live_budget_is_refused_with_both_figures(live: Live) -> None:  # noqa: F811
    # No live worker yet: nothing to compare with, the job is queued (the positive control).
    status, body = _submit(live, "first.mp4")
    assert status == 202, body
    small = memory_settings(live.tmp_path, limit_mb=500, reserve_mb=256)
    assert isinstance(_claim(live.db_url, small, "w-small"), Waiting)  # registers a 244 MB budget
    status, body = _submit(live)
    assert status == 422, body
    message = str(body)
    assert "600 MB" in message and "244 MB" in message and "w-small" in message
    upload = live.client.post("/v1/public/jobs", files={"file": ("clip.mp4", b"video bytes")},
                              data={"duration": "5"}, headers=live.admin)  # fmt: skip
    assert upload.status_code == 422 and "244 MB" in upload.text, upload.text
    uploads = live.tmp_path / "data" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []  # the refused upload was removed
    listed = live.client.get("/v1/admin/jobs", headers=live.admin).json()["jobs"]
    assert len(listed) == 1  # nothing half-written


def test_a_waiting_job_shows_in_its_status_stats_and_metrics(live: Live) -> None:  # noqa: F811
    roomy = memory_settings(live.tmp_path, limit_mb=1500, reserve_mb=256)
    ids = []
    for n in range(3):
        status, body = _submit(live, f"clip{n}.mp4")
        assert status == 202, body
        ids.append(str(body["id"]))
    before = _metrics(live)
    assert before["montage_jobs_waiting_for_memory"] == 0 and before["montage_jobs_admitted_total"] == 0
    results = [_claim(live.db_url, roomy, f"w{i}") for i in range(3)]
    assert [type(r).__name__ for r in results] == ["Lease", "Lease", "Waiting"]

    job = live.client.get(f"/v1/public/jobs/{ids[2]}", headers=live.admin).json()
    assert job["state"] == "queued" and job["attempts"] == 0
    assert job["status_text"] == "waiting for memory: needs 600 MB, 44 MB free"

    stats = live.client.get("/v1/admin/stats", headers=live.admin).json()["admission"]
    assert stats["waiting"] == [{"id": ids[2], "status_text": "waiting for memory: needs 600 MB, 44 MB free"}]
    assert stats["reserved_mb"] == {"m1": 1200}
    assert {w["worker_id"]: (w["budget_mb"], w["live"]) for w in stats["workers"]} == {
        "w0": (1244, True), "w1": (1244, True), "w2": (1244, True),
    }  # fmt: skip
    assert "limit_mb - memory.reserve_mb" in stats["formula"]

    after = _metrics(live)
    assert after["montage_jobs_waiting_for_memory"] == 1
    assert after["montage_jobs_admitted_total"] == 2
    assert after["montage_jobs_oom_killed_total"] == 0
    assert "montage_orphans_reaped_total" in after
    reading = read_memory(live.loaded.settings)
    assert abs(after["montage_memory_limit_bytes"] - reading.limit_mb * MIB) < MIB
    assert 0 < after["montage_memory_working_set_bytes"] < after["montage_memory_limit_bytes"]
    assert abs(after["montage_memory_available_bytes"] - reading.available_mb * MIB) < 64 * MIB
    text = live.client.get("/metrics").text
    reserved = [
        s for f in text_string_to_metric_families(text) for s in f.samples if s.name == "montage_memory_reserved_bytes"
    ]
    assert [(s.labels, s.value) for s in reserved] == [({"machine": "m1"}, 1200 * MIB)]
