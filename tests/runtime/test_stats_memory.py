"""``/v1/admin/stats`` shows the memory limit read from the service's own cgroup and the job-cgroup status."""

from __future__ import annotations

from montage.runtime.memory_manager import read_memory
from tests.service.conftest import Live, live, sqlite_db_url  # noqa: F401 - fixtures


def test_stats_show_the_memory_limit_and_whether_job_cgroups_work(live: Live) -> None:  # noqa: F811
    resp = live.client.get("/v1/admin/stats", headers=live.admin)
    assert resp.status_code == 200, resp.text
    memory = resp.json()["memory"]
    independent = read_memory(live.loaded.settings)
    assert memory["limit_mb"] == round(independent.limit_mb, 1)
    assert memory["source"] == independent.source
    assert abs(memory["available_mb"] - independent.available_mb) < 64
    assert isinstance(memory["job_cgroups"], bool) and memory["job_cgroups_reason"]
