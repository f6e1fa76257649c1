"""Baseline, guard, policy and report: recorded samples (deterministic) and a tiny real workload (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage.errors import ValidationFailure
from montage.ops.checks.perf_guard import Params
from montage.ops.perf import baseline, policy, report
from montage.ops.perf.cli import main
from montage.ops.perf.guard import judge, run_guard
from montage.ops.perf.measure import RunSample
from montage.ops.perf.runner import Runner
from montage.ops.stats import Verdict

from .conftest import git, write_workload

FAST = Params(resamples=500, min_pairs=4, max_pairs=8, budget_s=60)


def sample(side: str, fps: float, rss: float = 130.0, warmup: bool = False) -> RunSample:
    frames = 300
    cpu = frames / fps
    return RunSample(
        side=side,
        tree=f"/trees/{side}",
        commit="c0ffee",
        frames=frames,
        expected_frames=frames,
        user_s=cpu * 0.96,
        sys_s=cpu * 0.04,
        wall_s=cpu / 1.6,
        cpu_fps=fps,
        wall_fps=fps * 1.6,
        ffmpeg_rss_mb=rss,
        ffmpeg_processes=1,
        parent_rss_mb=21.0,
        parent_rss_source="test",
        rss_polls=300,
        loadavg_before=(1.0, 1.0, 1.0),
        loadavg_after=(1.1, 1.0, 1.0),
        started_at="2026-11-27T15:00:00+00:00",
        warmup=warmup,
    )


# CPU-time fps recorded from interleaved A/B runs on this 2-core machine (neighbours busy in runs 3-4).
BASE = [80.4, 79.7, 75.1, 75.3, 80.1, 78.8]
SAME = [80.0, 80.2, 74.8, 75.6, 79.6, 79.1]
SLOWER = [66.1, 65.4, 62.0, 61.7, 65.8, 64.9]  # x264 "fast" instead of "veryfast": ~18 % fewer fps


def test_judge_recorded_aa_pass_and_regression_fail() -> None:
    base = [sample("baseline", f) for f in BASE]
    aa, _ = judge([sample("candidate", f) for f in SAME], base, params=FAST)
    bad, decisions = judge([sample("candidate", f) for f in SLOWER], base, params=FAST)
    assert aa is Verdict.PASS
    assert bad is Verdict.FAIL
    assert decisions["cpu:render"].verdict is Verdict.FAIL and decisions["rss:render"].verdict is Verdict.PASS


def test_judge_rss_growth_fails_on_rss_alone() -> None:
    base = [sample("baseline", f, rss=130.0) for f in BASE]
    cand = [sample("candidate", f, rss=160.0) for f in SAME]  # +23 %
    verdict, decisions = judge(cand, base, params=FAST)
    assert verdict is Verdict.FAIL
    assert decisions["rss:render"].verdict is Verdict.FAIL and decisions["cpu:render"].verdict is Verdict.PASS


def test_judge_thresholds_come_from_the_caller() -> None:
    base = [sample("baseline", f) for f in BASE]
    cand = [sample("candidate", f) for f in SLOWER]
    loose, _ = judge(cand, base, params=FAST.model_copy(update={"max_fps_drop": 0.30}))
    assert loose is Verdict.PASS


def test_judge_too_few_samples_is_inconclusive() -> None:
    verdict, _ = judge([sample("candidate", 80.0)], [sample("baseline", 80.0)], params=FAST)
    assert verdict is Verdict.INCONCLUSIVE


def _baseline_doc(fps: list[float]) -> dict[str, object]:
    samples = [sample("baseline", f) for f in fps]
    summary = baseline.summarise(samples)
    return {
        "schema": 1,
        "fps": summary["cpu_fps"]["median"],
        "rss_mb": summary["ffmpeg_rss_mb"]["max"],
        "wall_fps": summary["wall_fps"]["median"],
        "parent_rss_mb": summary["parent_rss_mb"]["max"],
        "commit": "c0ffee",
        "fingerprint": {},
        "workload": {},
        "summary": summary,
        "samples": [s.to_dict() for s in samples],
    }


def test_baseline_validation_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "perf_baseline.json"
    doc = _baseline_doc(BASE)
    baseline.write_baseline(path, doc)
    data, samples = baseline.load(path)
    assert len(samples) == 6 and data["fps"] == pytest.approx(79.25)
    doc["fps"] = 95.0  # edited by hand
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValidationFailure, match=r"perf_baseline.json: top-level fps/rss_mb .* edited by hand"):
        baseline.load(path)
    doc["fps"] = 0
    with pytest.raises(ValidationFailure, match="field 'fps' is 0; expected a positive number"):
        baseline.validate(doc, "perf_baseline.json")
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ValidationFailure, match=r"perf_baseline.json:1:2: invalid JSON"):
        baseline.load(path)
    with pytest.raises(ValidationFailure, match="no perf baseline; capture one"):
        baseline.load(tmp_path / "absent.json")


def test_thresholds_from_phase_file(tmp_path: Path) -> None:
    assert policy.thresholds_from_phases(tmp_path)[0] == Params()
    head = "id: 7\nslug: perf-guard\ntitle: Perf\ngoal: guard fps\ndepends_on: []\n"
    gate = "gate:\n  - id: perf\n    check: perf_guard\n    with: {max_fps_drop: 0.05, max_rss_growth: 0.2}\n"
    (tmp_path / "07-perf-guard.yaml").write_text(head + gate, encoding="utf-8")
    params, source = policy.thresholds_from_phases(tmp_path)
    assert (params.max_fps_drop, params.max_rss_growth) == (0.05, 0.2) and params == Params(**params.model_dump())
    assert "07-perf-guard.yaml" in source
    with pytest.raises(ValidationFailure, match="max_fps_drop is 10: Input should be less than 1"):
        policy.thresholds_from_params({"max_fps_drop": 10}, "x.yaml")
    with pytest.raises(ValidationFailure, match="fps is 0.1: Extra inputs are not permitted"):
        policy.thresholds_from_params({"fps": 0.1}, "x.yaml")
    # read by the strict loader: an unknown key in phase 7's file is an error naming the file and line
    (tmp_path / "07-perf-guard.yaml").write_text(head + "colour: red\n" + gate, encoding="utf-8")
    with pytest.raises(ValidationFailure, match=r"07-perf-guard.yaml:6"):
        policy.thresholds_from_phases(tmp_path)


def test_disabled_flag_skips_measuring_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags = tmp_path / "flags.json"
    flags.write_text('{"PERF_GUARD_ENABLED": false}', encoding="utf-8")
    rc = main(["--repo", str(tmp_path), "guard", "--flags-file", str(flags), "--baseline-file", str(tmp_path / "no")])
    assert rc == 0
    assert "perf guard DISABLED: PERF_GUARD_ENABLED=false" in capsys.readouterr().out
    flags.write_text('{"PERF_GUARD_ENABLED": true}', encoding="utf-8")
    assert policy.guard_enabled(flags)
    # enabled again: the missing baseline is now a usage error, not a silent pass
    rc = main(["--repo", str(tmp_path), "guard", "--flags-file", str(flags), "--baseline-file", str(tmp_path / "no")])
    assert rc == 2


def test_history_is_append_only(tmp_path: Path) -> None:
    hist = tmp_path / "h.jsonl"
    report.append_history(hist, {"verdict": "PASS", "fps_ratio": 1.0})
    first = hist.read_bytes()
    entries = report.append_history(hist, {"verdict": "FAIL", "fps_ratio": 0.8})
    assert hist.read_bytes().startswith(first)
    assert [e["verdict"] for e in entries] == ["PASS", "FAIL"]


@pytest.mark.slow
def test_guard_end_to_end_on_a_tiny_workload(tiny_repo: Path, tiny_runner: Runner, tmp_path: Path) -> None:
    """Baseline capture, stored comparison, forced A/B in a temporary worktree, a real regression, reports."""
    base_file = tiny_repo / "perf_baseline.json"
    doc = baseline.capture(tiny_repo, workdir=tiny_runner.workdir, runs=4, runner=tiny_runner, progress=lambda m: None)
    baseline.write_baseline(base_file, doc)
    assert doc["commit"] == git(tiny_repo, "rev-parse", "HEAD") and doc["dirty"] is False
    assert doc["fps"] > 0 and doc["rss_mb"] > 0 and doc["parent_rss_mb"] > 0 and doc["frames"] == 35

    # Forced A/B against HEAD: both sides' code and trees are recorded; the worktree is removed afterwards.
    result = run_guard(
        tiny_repo, baseline_path=base_file, workdir=tiny_runner.workdir, baseline_ref="HEAD",
        params=FAST, runner=tiny_runner, say=lambda m: None,
    )  # fmt: skip
    assert result.mode == "ab"
    assert result.verdict is not Verdict.FAIL  # A/A: same code on both sides
    assert result.sides["baseline"]["tree"] != result.sides["candidate"]["tree"]
    assert result.sides["baseline"]["commit"] == result.sides["candidate"]["commit"] == doc["commit"]
    assert not Path(result.sides["baseline"]["tree"]).exists()
    assert git(tiny_repo, "worktree", "list").count("\n") == 0
    assert result.rejudge() == (result.verdict, result.decisions)

    # A real regression in the candidate's tree (a much slower encoder preset at a larger size): FAIL, with why.
    write_workload(tiny_repo, preset="veryslow", width=320, height=180)
    slow = run_guard(
        tiny_repo, baseline_path=base_file, workdir=tiny_runner.workdir, params=FAST, runner=tiny_runner,
        say=lambda m: None,
    )  # fmt: skip
    assert slow.mode == "ab"
    assert "command" in slow.fingerprint_differences  # the render changed, so the stored samples are not comparable
    assert slow.verdict is Verdict.FAIL
    # the slower, larger encode also needs more memory: RSS, nearly deterministic, FAILs after min_pairs pairs
    # while CPU-time fps would need 6 pairs for a 95 % interval of the median pair ratio
    assert slow.decisions["rss:render"].verdict is Verdict.FAIL
    assert "every one of" in slow.decisions["rss:render"].reason
    assert slow.decisions["cpu:render"].verdict is Verdict.FAIL or "need 6" in slow.decisions["cpu:render"].reason

    doc = report.write_report(slow, tmp_path / "report", tmp_path / "history.jsonl")
    md = (tmp_path / "report" / "perf_report.md").read_text(encoding="utf-8")
    assert "# Perf guard: FAIL" in md and "every one of" in md
    assert (tmp_path / "report" / "perf_report.svg").read_text(encoding="utf-8").startswith("<svg")
    assert doc["verdict"] == "FAIL" and len(doc["samples"]) >= 2 + 2 * FAST.min_pairs
    assert main(["rejudge", str(tmp_path / "report" / "perf_report.json")]) == 1
