"""The canary's baseline is the deployed version: the commit of the phase's last PASS bundle."""

from __future__ import annotations

import subprocess

import pytest

from montage.errors import UsageError
from montage.ops.canary import baseline

from ..conftest import Repo


def test_deployed_commit_of_the_last_pass_bundle_wins(two_phases: Repo) -> None:
    repo = two_phases
    repo.commit_all("phases")
    deployed = repo.git("rev-parse", "HEAD").strip()
    assert repo.ops("run", "0") == 0
    repo.write("src/app.py", "def add(a, b):\n    return b + a\n")
    repo.commit_all("a change after the deploy")
    chosen = baseline.resolve(repo.root, phase_id=0, explicit=None, fallback="HEAD")
    assert chosen.ref == deployed and "last PASS run" in chosen.how
    # an explicit --baseline-ref beats it; a phase without a bundle falls back to its baseline_ref
    assert baseline.resolve(repo.root, phase_id=0, explicit="HEAD~1", fallback=None).ref == "HEAD~1"
    fallback = baseline.resolve(repo.root, phase_id=1, explicit=None, fallback="HEAD")
    assert fallback.ref == "HEAD" and "no PASS bundle" in fallback.how


def test_without_bundle_or_baseline_ref_is_a_usage_error(two_phases: Repo) -> None:
    with pytest.raises(UsageError, match="baseline_ref"):
        baseline.resolve(two_phases.root, phase_id=1, explicit=None, fallback=None)


def test_dirty_recorded_bundle_is_a_usage_error(two_phases: Repo) -> None:
    repo = two_phases
    repo.commit_all("phases")
    repo.write("src/app.py", "def add(a, b):\n    return a - b\n")  # tracked and uncommitted: dirty
    assert repo.ops("run", "0") == 0
    with pytest.raises(UsageError, match="dirty tree"):
        baseline.resolve(repo.root, phase_id=0, explicit=None, fallback="HEAD")


def test_deployed_commit_missing_from_a_shallow_clone_is_a_usage_error(two_phases: Repo) -> None:
    repo = two_phases
    repo.commit_all("phases")
    assert repo.ops("run", "0") == 0
    repo.write("src/app.py", "def add(a, b):\n    return 0\n")
    repo.commit_all("after the deploy")
    clone = repo.root.parent / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(clone)], check=True,
                   timeout=60, capture_output=True)  # fmt: skip
    with pytest.raises(UsageError, match="shallow clone"):
        baseline.resolve(clone, phase_id=0, explicit=None, fallback="HEAD")
    # the full repository has it: the same bundle resolves there
    assert baseline.resolve(repo.root, phase_id=0, explicit=None, fallback=None).how.startswith("deployed")


def _pass_then_fail(repo: Repo) -> str:
    """Phase 0 PASSes on one commit, then a later commit's run FAILs and is published to latest/;
    returns the passed commit."""
    from ..conftest import simple_phase

    repo.commit_all("phases")
    deployed = repo.git("rev-parse", "HEAD").strip()
    assert repo.ops("run", "0") == 0
    failing = """
    gate:
      - id: ok
        check: command
        with: {argv: ["{python}", "-c", "print('broken')"], output_pattern: "fine"}
    """
    repo.phase("00-first.yaml", simple_phase(0, "first", gate=failing, extra='inputs: ["src/*"]\n'))
    repo.commit_all("a change that fails its gate")
    assert repo.ops("run", "0") != 0
    return deployed


def test_a_fail_published_after_the_pass_keeps_the_passed_commit(two_phases: Repo) -> None:
    """A FAIL in latest/ must not turn the canary into A/A (it once fell back to baseline_ref HEAD)."""
    repo = two_phases
    deployed = _pass_then_fail(repo)
    latest = (repo.root / "proofs/phase-00/latest/manifest.json").read_text()
    assert '"verdict": "FAIL"' in latest or '"verdict":"FAIL"' in latest
    chosen = baseline.resolve(repo.root, phase_id=0, explicit=None, fallback="HEAD")
    assert chosen.ref == deployed, chosen
    assert "last PASS run" in chosen.how and "(proofs/phase-00/runs/" in chosen.how, chosen.how  # repo-relative


def test_a_fresh_clone_finds_the_passed_commit_in_the_history_index(two_phases: Repo) -> None:
    """runs/ is git-ignored: with only latest/ (a FAIL) and history.jsonl, the PASS line names the commit."""
    import shutil

    repo = two_phases
    deployed = _pass_then_fail(repo)
    shutil.rmtree(repo.root / "proofs/phase-00/runs")
    chosen = baseline.resolve(repo.root, phase_id=0, explicit=None, fallback="HEAD")
    assert chosen.ref == deployed, chosen
    assert "(proofs/history.jsonl" in chosen.how, chosen.how
    # without the history line there is no PASS record left: the phase file's baseline_ref, said so
    (repo.root / "proofs/history.jsonl").unlink()
    fallback = baseline.resolve(repo.root, phase_id=0, explicit=None, fallback="HEAD")
    assert fallback.ref == "HEAD" and "no PASS bundle" in fallback.how
