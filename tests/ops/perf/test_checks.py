"""The perf_baseline / perf_guard check kinds, the phase files that use them and phase 7's rollback."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from montage.ops import sessions
from montage.ops.bundle import ProofsLayout
from montage.ops.checks import load_kind
from montage.ops.checks.base import CheckContext, Verdict
from montage.ops.checks.perf_guard import Params as PerfGuardParams
from montage.ops.loader import load_roadmap
from montage.ops.perf import baseline, report
from montage.ops.perf.cli import main
from montage.ops.perf.guard import GuardResult, judge
from montage.ops.rollback import execute
from montage.ops.stats import Verdict as StatsVerdict

from .test_guard import BASE, SAME, SLOWER, _baseline_doc, sample

REPO = Path(__file__).resolve().parents[3]


def _ctx(tmp_path: Path, repo: Path) -> CheckContext:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    return CheckContext(repo_root=repo, bundle_dir=tmp_path, evidence_dir=evidence, phase_id=7, check_id="perf")


def test_phase_files_use_the_perf_kinds() -> None:
    roadmap = load_roadmap(REPO / "phases", write_index=False)
    seven = roadmap.get(7).phase
    kinds = {c.check: c for c in seven.gate}
    assert set(kinds) >= {"perf_baseline", "perf_guard"}
    assert {"perf_baseline.json", "perf_report.json"} <= set(seven.bundle)
    assert "perf_baseline" in {c.check for c in roadmap.get(2).phase.gate}


def test_perf_baseline_kind_validates_the_committed_file(tmp_path: Path) -> None:
    kind = load_kind("perf_baseline")
    params = kind.Params()
    judgement = kind.run(params, _ctx(tmp_path, REPO))
    assert judgement.verdict == Verdict.PASS, judgement.reason
    assert judgement.value["fps"] > 0 and judgement.value["rss_mb"] > 0 and judgement.value["runs"] >= 3
    assert judgement.evidence == ["perf_baseline.json"]
    assert kind.rejudge(params, tmp_path / "evidence") == judgement


def test_perf_baseline_kind_fails_on_missing_or_edited_files(tmp_path: Path) -> None:
    kind = load_kind("perf_baseline")
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "a").mkdir()
    missing = kind.run(kind.Params(), _ctx(tmp_path / "a", repo))
    assert missing.verdict == Verdict.FAIL and "capture it with `nox -s perf -- --update-baseline`" in missing.reason
    doc = _baseline_doc(BASE)
    doc["rss_mb"] = 1.0
    (repo / "perf_baseline.json").write_text(json.dumps(doc), encoding="utf-8")
    (tmp_path / "b").mkdir()
    edited = kind.run(kind.Params(), _ctx(tmp_path / "b", repo))
    assert edited.verdict == Verdict.FAIL and "edited by hand" in edited.reason


def _guard_result(cand: list[float], base_fps: list[float]) -> GuardResult:
    samples = [sample("baseline", f) for f in base_fps] + [sample("candidate", f) for f in cand]
    params = PerfGuardParams()
    verdict, decisions = judge(samples[len(base_fps) :], samples[: len(base_fps)], params=params)
    return GuardResult(
        verdict=verdict, mode="ab", reason="interleaved A/B against HEAD: decided", decisions=decisions,
        params=params,
        sides={"candidate": {"tree": "/c", "commit": "c" * 40, "dirty": False, "workload_kind": "montage-run"},
               "baseline": {"tree": "/b", "commit": "b" * 40, "dirty": False, "workload_kind": "montage-run"}},
        samples=samples, baseline_file=_baseline_doc(BASE) | {"path": "perf_baseline.json", "captured_at": "t"},
        fingerprint={}, fingerprint_differences=[], elapsed_s=42.0,
    )  # fmt: skip


@pytest.mark.parametrize(("cand", "verdict"), [(SAME, Verdict.PASS), (SLOWER, Verdict.FAIL)])
def test_perf_guard_kind_rejudges_stored_samples(tmp_path: Path, cand: list[float], verdict: Verdict) -> None:
    """A stored report re-judges to the same verdict; a changed sample or threshold is caught."""
    kind = load_kind("perf_guard")
    evidence = tmp_path / "evidence"
    result = _guard_result(cand, BASE)
    report.write_report(result, evidence, tmp_path / "history.jsonl")
    code = {StatsVerdict.PASS: 0, StatsVerdict.FAIL: 1}[result.verdict]
    (evidence / "guard.json").write_text(json.dumps({"disabled": False, "exit_code": code}), encoding="utf-8")
    judgement = kind.rejudge(kind.Params(), evidence)
    assert judgement.verdict == verdict
    assert judgement.value["mode"] == "ab" and judgement.value["runs"] == 12
    assert "perf_report.svg" in judgement.evidence
    ET.parse(evidence / "perf_report.svg")  # well-formed SVG
    assert kind.rejudge(kind.Params(max_fps_drop=0.2), evidence).verdict == Verdict.ERROR
    # the gate's decision parameters count too: a report judged with other resamples is not this gate's
    other = kind.rejudge(kind.Params(resamples=500), evidence)
    assert other.verdict == Verdict.ERROR and "was judged with" in other.reason
    doc = json.loads((evidence / "perf_report.json").read_text(encoding="utf-8"))
    for s in doc["samples"]:
        if s["side"] == "candidate":
            s["cpu_fps"] = 40.0 if verdict == Verdict.PASS else 80.0
    (evidence / "perf_report.json").write_text(json.dumps(doc), encoding="utf-8")
    assert kind.rejudge(kind.Params(), evidence).verdict == Verdict.ERROR


def test_perf_guard_kind_without_a_report_is_an_error_not_a_pass(tmp_path: Path) -> None:
    kind = load_kind("perf_guard")
    (tmp_path / "guard.json").write_text('{"disabled": false, "exit_code": 7}', encoding="utf-8")
    (tmp_path / "guard.log").write_text("error: ffmpeg was not found\n", encoding="utf-8")
    judgement = kind.rejudge(kind.Params(), tmp_path)
    assert judgement.verdict == Verdict.ERROR and "exit code 7" in judgement.reason


def test_phase7_rollback_disables_the_perf_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Phase 7's rollback, run from the phase file, switches off nox -s perf, invoke perf.guard and the check."""
    flags = tmp_path / "flags.json"
    monkeypatch.setenv("MONTAGE_OPS__FLAGS_FILE", str(flags))
    phase = load_roadmap(REPO / "phases", write_index=False).get(7).phase
    code, record = execute(phase, REPO, ProofsLayout(tmp_path / "proofs"), out=lambda m: None)
    assert code == 0, record
    assert json.loads(flags.read_text(encoding="utf-8")) == {"PERF_GUARD_ENABLED": False}
    assert "perf is disabled" in (sessions.disabled_by_flag("perf", REPO) or "")
    assert "perf.guard is disabled" in (sessions.disabled_by_flag("perf.guard", REPO) or "")
    # the guard itself honours the same flag (when run directly, e.g. by CI calling python -m)
    assert main(["--repo", str(REPO), "guard"]) == 0
    assert "perf guard DISABLED" in capsys.readouterr().out
    kind = load_kind("perf_guard")
    judgement = kind.run(kind.Params(), _ctx(tmp_path, REPO))
    assert judgement.verdict == Verdict.INCONCLUSIVE and "phase 7 rollback" in judgement.reason
    assert kind.rejudge(kind.Params(), tmp_path / "evidence") == judgement


def test_nox_and_invoke_tables_name_the_same_guard() -> None:
    guard = [["{python}", "-m", "montage.ops.perf", "guard"]]
    assert sessions.NOX_SESSIONS["perf"] == guard
    assert sessions.INVOKE_TASKS["perf.guard"] == guard
    assert sessions.INVOKE_TASKS["perf.baseline"] == [["{python}", "-m", "montage.ops.perf", "baseline"]]


def test_history_and_report_of_a_stored_run(tmp_path: Path) -> None:
    shutil.copy(REPO / "perf_baseline.json", tmp_path / "b.json")
    data, samples = baseline.load(tmp_path / "b.json")
    workload = json.loads((REPO / "montage" / "ops" / "perf" / "workload.json").read_text(encoding="utf-8"))
    # the committed baseline was captured with the workload the guard runs today (recapture after a change)
    assert data["fingerprint"]["workload_kind"] == workload["kind"] and len(samples) >= 3
