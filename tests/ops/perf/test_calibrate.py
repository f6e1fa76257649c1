"""The calibration script's pieces: the regression patch, the naive rule and the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage.errors import UsageError
from montage.ops.perf import calibrate
from montage.ops.perf.workload import WORKLOAD_FILE, load_workload

from .conftest import write_workload


def test_regression_patch_slows_the_candidates_encoder(tmp_path: Path) -> None:
    write_workload(tmp_path, preset="veryfast")
    assert calibrate.apply_regression(tmp_path, "plan") == f"{WORKLOAD_FILE}: preset veryfast -> faster"
    assert load_workload(tmp_path).spec["preset"] == "faster"


def test_regression_patch_on_a_montage_run_plan(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "render": {"preset": "veryfast", "crf": 23}}), encoding="utf-8")
    write_workload(tmp_path, kind="montage-run", plan="plan.json")
    assert calibrate.apply_regression(tmp_path) == "plan.json: render.preset veryfast -> faster"
    assert json.loads(plan.read_text(encoding="utf-8"))["render"] == {"preset": "faster", "crf": 23}
    plan.write_text("{}", encoding="utf-8")
    with pytest.raises(UsageError, match="no render.preset"):
        calibrate.apply_regression(tmp_path)


def _run(side: str, cpu: float, wall: float, warmup: bool = False) -> dict[str, object]:
    return {"side": side, "cpu_fps": cpu, "wall_fps": wall, "warmup": warmup}


def test_naive_rule_judges_the_first_measured_candidate_run() -> None:
    doc = {
        "prior_samples": [],
        "samples": [_run("candidate", 10.0, 10.0, warmup=True), _run("baseline", 80, 60), _run("candidate", 70, 50)],
    }
    assert calibrate.naive(doc, "cpu_fps", 75.0) == "PASS"  # 70 >= 67.5
    assert calibrate.naive(doc, "wall_fps", 60.0) == "FAIL"  # 50 < 54
    assert calibrate.naive({"prior_samples": [], "samples": []}, "cpu_fps", 75.0) == "INCONCLUSIVE"


def test_table_counts_each_scenario() -> None:
    rows = [
        {"scenario": "A/A", "verdict": "PASS", "elapsed_s": 20.0, "fps_ratio": 1.01, "patch": "",
         "naive_wall": "FAIL", "naive_cpu": "PASS"},
        {"scenario": "regression", "verdict": "FAIL", "elapsed_s": 50.0, "fps_ratio": 0.7, "patch": "p",
         "naive_wall": "PASS", "naive_cpu": "FAIL"},
    ]  # fmt: skip
    text = calibrate.table({"rows": rows, "total_s": 120.0})
    assert "| A/A | 1 | 0 | 1 | 0 | 1 | 0 | 20 / 20 | 1.010 |" in text
    assert "| regression (p) | 1 | 1 | 0 | 0 | 0 | 1 | 50 / 50 | 0.700 |" in text
    assert "Total calibration time: 2.0 min" in text


def test_code_patch_edits_the_candidates_render_module(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[3]
    target = tmp_path / calibrate.RENDER_FILE
    target.parent.mkdir(parents=True)
    target.write_text((repo / calibrate.RENDER_FILE).read_text(encoding="utf-8"), encoding="utf-8")
    assert calibrate.apply_regression(tmp_path, "code") == f"{calibrate.RENDER_FILE}: x264 preset forced to faster"
    assert '"preset": "faster",' in target.read_text(encoding="utf-8")
    with pytest.raises(UsageError, match="expected one"):
        calibrate.apply_regression(tmp_path, "code")


def test_schedule_alternates_scenarios() -> None:
    assert [s for s, _ in calibrate.schedule(2, 3, "code")] == ["A/A", "regression"] * 2 + ["regression"]
    assert calibrate.schedule(1, 0, "code") == [("A/A", None)]
    assert len(calibrate.schedule(20, 20, "plan")) == 40
