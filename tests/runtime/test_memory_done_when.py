"""Issue 9's done-when, tried as a new user would: inside a cgroup limited to 1 GiB, ``get_available_mb()``
is the limit minus the working set read independently from the cgroup's files, and a real server's
``/v1/admin/stats`` shows that limit; the service's ``/metrics`` counts the orphans it reaped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from montage.runtime.jobcgroup import JobCgroup, JobCgroups
from tests.service.conftest import create_key_sync, sqlite_db_url  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
GIB_MB = 1024
REAL = JobCgroups.detect()
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cgroups and subreapers are Linux only")


def scenario(tmp_path: Path, db_url: str, cgroup: JobCgroup | None) -> dict[str, Any]:
    _, key = create_key_sync(db_url)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.runtime.memory_scenario", db_url, key, str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
        preexec_fn=None if cgroup is None else cgroup.preexec,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not REAL.available, reason=f"no writable memory cgroup: {REAL.reason}")
def test_inside_a_1_gib_cgroup_available_is_limit_minus_working_set_and_stats_show_the_limit(
    tmp_path: Path,
    sqlite_db_url: str,  # noqa: F811
) -> None:
    cgroup = REAL.create(f"test-1g-{tmp_path.name}", GIB_MB * MIB)  # under the process's own memory cgroup
    assert cgroup is not None
    try:
        out = scenario(tmp_path, sqlite_db_url, cgroup)
    finally:
        assert cgroup.close() is None  # always removed
    assert not cgroup.cgroup.path.exists()
    before, after = out["independent"], out["independent_after"]
    figures = {"get_available_mb": out["get_available_mb"], "independent": before, "stats": out["stats_memory"]}
    print(json.dumps(figures))
    assert before["cgroup"] == str(cgroup.cgroup.path)
    assert before["limit_mb"] == GIB_MB
    low, high = sorted((before["available_mb"], after["available_mb"]))
    assert low - 16 <= out["get_available_mb"] <= high + 16, out
    assert out["reading"]["limit_mb"] == GIB_MB and str(cgroup.cgroup.path) in out["reading"]["source"]
    assert out["stats_memory"]["limit_mb"] == GIB_MB
    assert str(cgroup.cgroup.path) in out["stats_memory"]["source"]
    assert out["metrics"]["montage_memory_limit_bytes"] == GIB_MB * MIB


def test_metrics_count_the_orphans_the_service_reaped(tmp_path: Path, sqlite_db_url: str) -> None:  # noqa: F811
    out = scenario(tmp_path, sqlite_db_url, None)
    assert out["grandchild"] in out["reaped"]
    assert out["metrics"]["montage_orphans_reaped_total"] == len(out["reaped"]) >= 1
