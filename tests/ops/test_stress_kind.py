"""The ``stress`` kind: verdicts from stress_metrics.json, and the stress run leaves no cgroup behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from montage.ops.checks import load_kind
from montage.ops.checks.base import Verdict
from montage.ops.checks.stress import Params, rejudge
from montage.runtime.jobcgroup import JobCgroups

ROOT = Path(__file__).resolve().parents[2]


def job(peak_mb: float, state: str = "succeeded", result_s: float = 20.0) -> dict[str, Any]:
    return {"job_id": f"j{peak_mb}", "state": state, "error": None, "result_s": result_s,
            "memory": {"peak_bytes": int(peak_mb * 1024 * 1024), "oom_kills": 0}}  # fmt: skip


def metrics(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "status": "measured", "cgroup_version": 1, "cgroup_path": "/sys/fs/cgroup/memory/x/montage-stress-1",
        "output_s": 20.0, "leftover_cgroups": [],
        "stress": {"jobs": [job(610), job(590), job(605)], "per_job_peak_mb": [610, 590, 605], "oom_kills": 0,
                   "parent_peak_mb": 1700},
        "control": {"jobs": [], "per_job_peak_mb": [], "oom_kills": 1},
    }  # fmt: skip
    base.update(changes)
    return base


def judge(tmp_path: Path, data: dict[str, Any]) -> tuple[Verdict, str]:
    (tmp_path / "stress_metrics.json").write_text(json.dumps(data))
    result = rejudge(Params(), tmp_path)
    return result.verdict, result.reason


def test_registered() -> None:
    assert load_kind("stress").Params is Params


def test_pass_needs_no_oom_every_job_valid_and_an_oom_in_the_control(tmp_path: Path) -> None:
    verdict, reason = judge(tmp_path, metrics())
    assert verdict == Verdict.PASS, reason
    assert "610, 590, 605 MB" in reason


def test_an_oom_kill_fails(tmp_path: Path) -> None:
    data = metrics()
    data["stress"]["oom_kills"] = 1
    assert judge(tmp_path, data)[0] == Verdict.FAIL


def test_a_failed_job_or_a_short_result_fails(tmp_path: Path) -> None:
    data = metrics()
    data["stress"]["jobs"][1] = job(590, state="failed")
    assert judge(tmp_path, data)[0] == Verdict.FAIL
    data = metrics()
    data["stress"]["jobs"][2] = job(605, result_s=3.0)
    assert judge(tmp_path, data)[0] == Verdict.FAIL


def test_a_control_without_oom_is_inconclusive(tmp_path: Path) -> None:
    verdict, reason = judge(tmp_path, metrics(control={"oom_kills": 0, "jobs": []}))
    assert verdict == Verdict.INCONCLUSIVE and "not shown to be real" in reason


def test_jobs_far_below_target_are_inconclusive(tmp_path: Path) -> None:
    data = metrics()
    data["stress"]["per_job_peak_mb"] = [200, 210, 190]
    assert judge(tmp_path, data)[0] == Verdict.INCONCLUSIVE


def test_no_cgroup_is_inconclusive_with_the_reason(tmp_path: Path) -> None:
    verdict, reason = judge(tmp_path, {"status": "no_cgroup", "reason": "no cgroup memory mount"})
    assert verdict == Verdict.INCONCLUSIVE and "no cgroup memory mount" in reason


def test_leftover_cgroups_fail_and_missing_metrics_are_an_error(tmp_path: Path) -> None:
    assert judge(tmp_path, metrics(leftover_cgroups=["/x/montage-job-1"]))[0] == Verdict.FAIL
    (tmp_path / "stress_metrics.json").unlink()
    assert rejudge(Params(), tmp_path).verdict == Verdict.ERROR


REAL = JobCgroups.detect()


@pytest.mark.skipif(not REAL.available, reason=f"no writable memory cgroup: {REAL.reason}")
def test_interrupted_stress_run_leaves_no_montage_cgroups(tmp_path: Path) -> None:
    assert REAL.parent is not None
    # only the cgroups this run adds count: a job cgroup another process left (a worker SIGKILLed on this
    # machine) is not this run's doing, and failed phase 0 once
    before = set(REAL.parent.path.glob("montage-job-*"))
    proc = subprocess.Popen([sys.executable, "-m", "montage.runtime.stress", "--out", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    mine = REAL.parent.path / f"montage-stress-{proc.pid}"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not mine.exists():
            time.sleep(0.1)
        assert mine.exists(), "the stress run never created its cgroup"
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert not mine.exists()
    assert set(REAL.parent.path.glob("montage-job-*")) - before == set()
