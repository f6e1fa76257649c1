"""A real local canary on loopback: a throwaway clone of this repository, HEAD in a temporary
worktree against the clone's working tree, both served by ``montage serve --workers 0``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from montage.ops.checks import canary as kind
from montage.ops.checks.base import CheckContext, Verdict

REPO = Path(__file__).resolve().parents[3]
INJECT = "    db = database if database is not None else Database.from_settings(loaded.settings)\n"


def _clone(tmp_path: Path) -> Path:
    dest = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", "--local", "--no-hardlinks", str(REPO), str(dest)], check=True,
                   timeout=120, capture_output=True)  # fmt: skip
    return dest


def _run(repo: Path, tmp_path: Path, params: kind.Params) -> tuple[dict[str, object], str, Verdict]:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    ctx = CheckContext(repo_root=repo, bundle_dir=tmp_path, evidence_dir=evidence, phase_id=2, check_id="canary")
    judged = kind.run(params, ctx)
    assert judged == kind.rejudge(params, evidence)  # the verdict is a function of the stored samples
    assert sorted(judged.evidence) == [kind.METRICS, kind.OUT]
    metrics = json.loads((evidence / kind.METRICS).read_text(encoding="utf-8"))
    out = (evidence / kind.OUT).read_text(encoding="utf-8")
    # the temporary worktree is gone again
    listed = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True, timeout=30)
    assert len(listed.stdout.splitlines()) == 1
    return metrics, out, judged.verdict


@pytest.mark.slow
def test_unchanged_tree_meets_the_slos_it_can_decide(tmp_path: Path) -> None:
    repo = _clone(tmp_path)
    metrics, out, verdict = _run(repo, tmp_path, kind.Params(requests=400, max_duration_s=30))
    assert metrics["synthetic"] is True and "not production traffic" in out
    sides = metrics["sides"]
    assert isinstance(sides, dict)
    for side in ("baseline", "candidate"):
        samples = sides[side]["samples"]
        assert len(samples["status"]) == 400
        assert {"health", "ready", "submit", "status", "missing"} == set(samples["kind"])
        assert all(s in (200, 202, 404) for s in samples["status"]), sorted(set(samples["status"]))
        assert sides[side]["scrape_after"]["import_errors_total"] == 0
        assert sides[side]["resources"]["cpu_percent"] > 0 and sides[side]["resources"]["rss_peak_bytes"] > 0
    lines = out.splitlines()
    assert lines[0] in ("PASS", "PARTIAL")  # p99 on a busy shared machine may straddle: PARTIAL
    for name in ("error_rate_5xx", "import_errors", "cpu", "mem"):
        assert any(line.startswith(f"{name}: PASS ") for line in lines), out
    assert verdict is (Verdict.PASS if lines[0] == "PASS" else Verdict.INCONCLUSIVE)


@pytest.mark.slow
def test_candidate_with_a_failing_import_fails(tmp_path: Path) -> None:
    repo = _clone(tmp_path)
    app = repo / "montage" / "service" / "app.py"
    text = app.read_text(encoding="utf-8")
    assert INJECT in text
    inject = "    from montage.service.imports import optional_import\n\n    optional_import('resolve_mcp_gone')\n"
    app.write_text(text.replace(INJECT, INJECT + inject), encoding="utf-8")
    metrics, out, verdict = _run(repo, tmp_path, kind.Params(requests=250, max_duration_s=30))
    assert verdict is Verdict.FAIL
    assert out.splitlines()[0] == "FAIL"
    assert any(line.startswith("import_errors: FAIL measured 1 ") for line in out.splitlines()), out
    sides = metrics["sides"]
    assert isinstance(sides, dict)
    assert sides["baseline"]["scrape_after"]["import_errors_total"] == 0
    assert sides["candidate"]["scrape_after"]["import_errors_by_module"] == {"resolve_mcp_gone": 1.0}
