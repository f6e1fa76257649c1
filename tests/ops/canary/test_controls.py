"""The canary's negative controls (montage/ops/canary/controls.py): each one, applied to a throwaway
worktree of a clone of this repository, makes a real loopback canary FAIL; the unchanged worktree
does not.  The controls change the candidate only, so they fail a same-code flag canary too."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from montage.core import git as core_git
from montage.ops.canary import controls
from montage.ops.canary.collect import control_overlay
from montage.ops.checks import canary as kind
from montage.ops.checks.base import CheckContext, ControlNotApplicable, Verdict

REPO = Path(__file__).resolve().parents[3]
FAST = {"requests": 300, "jobs": 3, "max_duration_s": 25, "drain_s": 40, "min_samples": 100}
NO_BUNDLE_PHASE = 99  # no PASS bundle: the baseline is the commit baseline_ref names (as for a deployed one)


def _clone(tmp_path: Path) -> Path:
    dest = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", "--local", "--no-hardlinks", str(REPO), str(dest)], check=True,
                   timeout=120, capture_output=True)  # fmt: skip
    return dest


def _canary(tmp_path: Path, control: str | None, params: kind.Params) -> tuple[dict[str, object], str, Verdict]:
    """Apply ``control`` (None: nothing) to a temporary worktree of a clone's HEAD and run the kind there."""
    repo = _clone(tmp_path)
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    with core_git.temporary_worktree(repo, "HEAD", prefix="montage-cctl-") as worktree:
        change = "" if control is None else controls.apply(worktree.path, params, control)
        assert change.startswith("" if control is None else controls.OVERLAY)
        ctx = CheckContext(repo_root=worktree.path, bundle_dir=tmp_path, evidence_dir=evidence,
                           phase_id=NO_BUNDLE_PHASE, check_id="canary")  # fmt: skip
        judged = kind.run(params, ctx)
    assert judged == kind.rejudge(params, evidence)
    metrics = json.loads((evidence / kind.METRICS).read_text(encoding="utf-8"))
    out = (evidence / kind.OUT).read_text(encoding="utf-8")
    sides = metrics["sides"]
    overlay = sides["candidate"].get("control_overlay")
    assert "control_overlay" not in sides["baseline"]
    assert controls.OVERLAY not in sides["baseline"]["env"]["PYTHONPATH"]
    if control is None:
        assert overlay is None
    else:
        assert overlay is not None, "the candidate ran without the control's overlay"
        assert overlay["files"] == {controls.FILES[control][0]: overlay["files"][controls.FILES[control][0]]}
        assert sides["candidate"]["env"]["PYTHONPATH"].split(os.pathsep)[0].endswith(controls.OVERLAY)
        assert "environments differ" in out  # never A/A, even on the same code
    return metrics, out, judged.verdict


def _line(out: str, slo: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"{slo}: "))


@pytest.mark.slow
def test_slow_control_fails_a_same_code_flag_canary(tmp_path: Path) -> None:
    # the p99 SLO is a median over windows of 25 pairs: FAST's ~12 windows leave an interval too wide
    # on a loaded machine (a measured 1.59 gave [0.62, 2.34]), and so did 700 requests (~25 windows) at
    # load 5 (phase 2's suite: 1.68 [1.19, 1.99], INCONCLUSIVE): 1400 requests, up to 60 s, ~50 windows
    params = kind.Params(baseline_code="candidate", **{**FAST, "requests": 1400, "max_duration_s": 60})
    _, out, verdict = _canary(tmp_path, "slow", params)
    assert verdict is Verdict.FAIL, out
    assert _line(out, "p99_latency_ratio").startswith("p99_latency_ratio: FAIL "), out


@pytest.mark.slow
def test_5xx_control_fails_against_a_commit_baseline(tmp_path: Path) -> None:
    # 2.5 % errors need several hundred requests before the Wilson interval lies wholly above the 1 % SLO
    params = kind.Params(baseline_ref="HEAD", **{**FAST, "requests": 1000, "max_duration_s": 60})
    metrics, out, verdict = _canary(tmp_path, "5xx", params)
    assert verdict is Verdict.FAIL, out
    assert _line(out, "error_rate_5xx").startswith("error_rate_5xx: FAIL "), out
    sides = metrics["sides"]
    assert isinstance(sides, dict)
    assert 500 not in sides["baseline"]["samples"]["status"]
    share = sides["candidate"]["samples"]["status"].count(500) / len(sides["candidate"]["samples"]["status"])
    assert 0.01 < share < 0.03, share


@pytest.mark.slow
def test_broken_import_control_fails_a_same_code_flag_canary(tmp_path: Path) -> None:
    metrics, out, verdict = _canary(tmp_path, "broken-import", kind.Params(baseline_code="candidate", **FAST))
    assert verdict is Verdict.FAIL, out
    assert _line(out, "import_errors").startswith("import_errors: FAIL "), out
    sides = metrics["sides"]
    assert isinstance(sides, dict)
    assert sides["baseline"]["scrape_after"]["import_errors_total"] == 0
    assert sides["candidate"]["scrape_after"]["import_errors_by_module"].get("av") == 1.0


@pytest.mark.slow
def test_unchanged_worktree_does_not_fail(tmp_path: Path) -> None:
    _, out, verdict = _canary(tmp_path, None, kind.Params(baseline_ref="HEAD", **FAST))
    assert verdict is not Verdict.FAIL, out
    assert "comparison: A/A: " in out  # the same commit, the same environment: no change to compare


def test_prometheus_source_has_nothing_to_change(tmp_path: Path) -> None:
    params = kind.Params(source="prometheus", baseline_selector='track="stable"', candidate_selector='track="canary"')
    for control in kind.CONTROLS:
        assert control.apply is not None
        with pytest.raises(ControlNotApplicable, match="source prometheus: .*nothing on the fleet to change"):
            control.apply(tmp_path, params)
    assert not (tmp_path / controls.OVERLAY).exists()


def test_the_kind_declares_its_four_controls_expecting_fail() -> None:
    assert [c.name for c in kind.CONTROLS] == ["slow", "5xx", "broken-import", "dead-replica"]
    assert all(c.expect == (Verdict.FAIL,) and not c.fast for c in kind.CONTROLS)


def test_overlay_goes_first_on_the_candidate_pythonpath_after_candidate_env(tmp_path: Path) -> None:
    env = {"PYTHONPATH": f"/elsewhere{os.pathsep}{tmp_path}"}  # as a candidate_env may set it
    assert control_overlay(tmp_path, env) == {}
    assert env == {"PYTHONPATH": f"/elsewhere{os.pathsep}{tmp_path}"}  # no overlay: nothing changes
    controls.apply(tmp_path, kind.Params(), "broken-import")
    record = control_overlay(tmp_path, env)
    assert env["PYTHONPATH"] == os.pathsep.join([str(tmp_path / controls.OVERLAY), "/elsewhere", str(tmp_path)])
    assert record["dir"] == controls.OVERLAY and list(record["files"]) == ["av.py"]
