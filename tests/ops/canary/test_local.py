"""A real local canary on loopback: a throwaway clone of this repository, both sides served by
``montage serve --workers 1`` rendering the tiny test clip while they answer the request mix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from montage.ops.checks import canary as kind
from montage.ops.checks.base import CheckContext, Verdict

REPO = Path(__file__).resolve().parents[3]
FAST = {"requests": 300, "jobs": 3, "max_duration_s": 25, "drain_s": 40, "min_samples": 100}


def _clone(tmp_path: Path) -> Path:
    dest = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", "--local", "--no-hardlinks", str(REPO), str(dest)], check=True,
                   timeout=120, capture_output=True)  # fmt: skip
    return dest


def _run(repo: Path, tmp_path: Path, params: kind.Params) -> tuple[dict[str, object], str, Verdict]:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    ctx = CheckContext(repo_root=repo, bundle_dir=tmp_path, evidence_dir=evidence, phase_id=3, check_id="canary")
    judged = kind.run(params, ctx)
    assert judged == kind.rejudge(params, evidence)  # the verdict is a function of the stored samples
    assert sorted(judged.evidence) == [kind.METRICS, kind.OUT]
    metrics = json.loads((evidence / kind.METRICS).read_text(encoding="utf-8"))
    out = (evidence / kind.OUT).read_text(encoding="utf-8")
    listed = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True, timeout=30)
    assert len(listed.stdout.splitlines()) == 1  # no temporary worktree left
    return metrics, out, judged.verdict


@pytest.mark.slow
def test_same_code_same_env_is_aa_and_renders_real_jobs(tmp_path: Path) -> None:
    repo = _clone(tmp_path)
    (repo / ".env").write_text("MONTAGE_SERVICE__UPLOAD_MAX_MB=7\n", encoding="utf-8")  # stray: must not be read
    metrics, out, verdict = _run(repo, tmp_path, kind.Params(baseline_code="candidate", **FAST))
    assert "comparison: A/A: " in out
    assert any(line.startswith("p99_latency_ratio: INCONCLUSIVE") and "no change to compare" in line
               for line in out.splitlines()), out  # fmt: skip
    assert verdict is Verdict.INCONCLUSIVE
    sides = metrics["sides"]
    assert isinstance(sides, dict)
    for side in ("baseline", "candidate"):
        doc = sides[side]
        assert {"upload", "submit", "download", "admin_stats", "admin_jobs"} <= set(doc["samples"]["kind"])
        assert all(s in (200, 202, 404, 409) for s in doc["samples"]["status"]), sorted(set(doc["samples"]["status"]))
        assert [j["state"] for j in doc["jobs"]] == ["succeeded"] * 3, doc["jobs"]
        assert doc["dotenv"]["present"] is True and doc["dotenv"]["read"] is False
        assert doc["config"]["settings"]["service.upload_max_mb"] == {"origin": "default", "value": "2048"}
    for name in ("import_errors", "job_errors", "cpu", "mem"):
        assert any(line.startswith(f"{name}: PASS ") for line in out.splitlines()), out
    # 0 errors in 300 requests still allows 1.26 %: undecided at this size, but never FAIL
    assert any(line.startswith("error_rate_5xx: ") and " FAIL " not in line for line in out.splitlines()), out


@pytest.mark.slow
def test_candidate_whose_lazy_import_is_shadowed_fails(tmp_path: Path) -> None:
    repo = _clone(tmp_path)
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "av.py").write_text("raise ImportError('a broken PyAV build')\n", encoding="utf-8")
    params = kind.Params(baseline_code="candidate", candidate_env={"PYTHONPATH": f"{shadow}:{repo}"}, **FAST)
    metrics, out, verdict = _run(repo, tmp_path, params)
    assert verdict is Verdict.FAIL
    assert "comparison: A/B: " in out and "environments differ" in out
    assert any(line.startswith("import_errors: FAIL ") for line in out.splitlines()), out
    sides = metrics["sides"]
    assert isinstance(sides, dict)
    assert sides["baseline"]["scrape_after"]["import_errors_total"] == 0
    assert sides["candidate"]["scrape_after"]["import_errors_by_module"].get("av") == 1.0
