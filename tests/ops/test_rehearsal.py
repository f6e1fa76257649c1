"""The rollback rehearsal of phase.selftest: every step runs in a throwaway worktree and what it claims
to change is observed changed, or the step is reported as refusing (naming why) or not acting."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from montage.ops import rehearsal, selftest
from montage.ops.bundle import ProofsLayout
from montage.ops.loader import load_roadmap
from montage.ops.model import Phase

from .conftest import Repo, simple_phase

PROJECT = Path(__file__).resolve().parents[2]
ROADMAP = load_roadmap(PROJECT / "phases", write_index=False)


def _phase(rollback: list[dict[str, object]]) -> Phase:
    return Phase.model_validate({"id": 0, "slug": "p", "title": "t", "goal": "g", "rollback": rollback})


def _by_step(done: list[rehearsal.Rehearsal]) -> dict[str, rehearsal.Rehearsal]:
    return {r.step: r for r in done}


@pytest.fixture(scope="module")
def project_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of this repository's HEAD: the real phase files, code and migrations, outside the checkout."""
    dest = tmp_path_factory.mktemp("rehearsal") / "project"
    subprocess.run(["git", "clone", "-q", "--local", "--no-hardlinks", str(PROJECT), str(dest)], check=True,
                   timeout=180, capture_output=True)  # fmt: skip
    return dest


@pytest.mark.filterwarnings("ignore:USE_SETTINGS_V2=false:DeprecationWarning")
def test_every_real_flag_rollback_switches_its_component(project_clone: Path, tmp_path: Path) -> None:
    """Phases 3, 4, 6 and 7 as committed: each set_flag step acts on the component it names."""
    seen = {}
    for lp in ROADMAP.ordered():
        flag_steps = [s for s in lp.phase.rollback if s.set_flag is not None]
        if not flag_steps:
            continue
        phase = lp.phase.model_copy(update={"rollback": flag_steps})
        done = rehearsal.rehearse(phase, project_clone, tmp_path / f"logs-{lp.phase.id}", out=lambda _: None)
        for r in done:
            assert r.result == rehearsal.ACTED, r
            seen[r.step] = r.observed
    assert seen == {
        "legacy-loader": "settings loader settings_v2 -> settings loader legacy",
        "split-apps": "admin port None -> admin port 8001",
        "disable-reaper": "reaping orphans -> not reaping",
        "disable-perf-job": "perf session enabled -> perf session disabled",
    }, seen
    assert not (project_clone / "var" / "flags.json").exists()  # the clone's own flags file was never written
    assert subprocess.run(["git", "-C", str(project_clone), "worktree", "list"], capture_output=True, text=True,
                          check=True).stdout.count("\n") == 1  # fmt: skip


def test_the_real_downgrade_moves_the_database_one_revision_down(project_clone: Path, tmp_path: Path) -> None:
    """Phase 5's `alembic downgrade -1` runs against the rehearsal's own database, and its revision drops."""
    from montage.db.migrate import head_revision

    phase = ROADMAP.get(5).phase
    (r,) = rehearsal.rehearse(phase, project_clone, tmp_path / "logs", out=lambda _: None)
    assert r.result == rehearsal.ACTED, r
    head = head_revision()
    assert r.observed.startswith(f"database revision {head}, ") and " -> database revision " in r.observed, r
    assert f"-> database revision {head}," not in r.observed
    assert (tmp_path / "logs" / "downgrade.log").is_file()


def test_steps_that_do_not_act_fail_and_stop_the_plan(repo: Repo, tmp_path: Path) -> None:
    repo.commit_all("init")
    phase = _phase([
        {"id": "noop", "run": ["{python}", "-c", "print('done')"], "timeout_s": 60},
        {"id": "never", "set_flag": {"name": "USE_SETTINGS_V2", "value": False}},
    ])  # fmt: skip
    done = rehearsal.rehearse(phase, repo.root, tmp_path / "logs", out=lambda _: None)
    assert [r.step for r in done] == ["noop"], done  # the first failing step stops the plan
    assert done[0].result == rehearsal.FAILED and "nothing the rehearsal observes changed" in done[0].observed
    unobserved = _phase([{"id": "pause", "set_flag": {"name": "SUBMISSIONS_PAUSED", "value": True}}])
    (r,) = rehearsal.rehearse(unobserved, repo.root, tmp_path / "logs2", out=lambda _: None)
    assert r.result == rehearsal.FAILED and "no observer for flag SUBMISSIONS_PAUSED" in r.observed
    failing = _phase([{"id": "boom", "run": ["{python}", "-c", "raise SystemExit(3)"], "timeout_s": 60}])
    (r,) = rehearsal.rehearse(failing, repo.root, tmp_path / "logs3", out=lambda _: None)
    assert r.result == rehearsal.FAILED and r.observed.startswith("exit 3"), r


REVERT = """
rollback:
  - id: revert
    revert: bundle_commit
"""


def test_a_revert_acts_in_the_worktree_and_leaves_the_repository_alone(repo: Repo, tmp_path: Path) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first", extra=REVERT))
    repo.commit_all("phases")
    repo.write("src/app.py", "def add(a, b):\n    return a + b  # the change\n")
    repo.commit_all("the change")
    assert repo.ops("run", "0") == 0  # judged right after landing its change
    repo.commit_all("proofs: phase 0 PASS bundle")
    head = repo.git("rev-parse", "HEAD")
    phase = load_roadmap(repo.phases, write_index=False).get(0).phase
    (r,) = rehearsal.rehearse(phase, repo.root, tmp_path / "logs", out=lambda _: None)
    assert r.result == rehearsal.ACTED and "1 file(s) outside the bundles, 1 of them" in r.observed, r
    assert "the change" in (repo.root / "src" / "app.py").read_text()  # only the worktree was reverted
    assert repo.git("rev-parse", "HEAD") == head
    # judged again on the commit that records the bundle: that commit carries no code, the revert refuses
    assert repo.ops("run", "0") == 0
    (r,) = rehearsal.rehearse(phase, repo.root, tmp_path / "logs2", out=lambda _: None)
    assert r.result == rehearsal.REFUSED and "changes nothing outside the bundles" in r.observed, r


def test_selftest_records_the_rehearsal_fails_on_a_rollback_that_does_not_act_and_verifies(repo: Repo) -> None:
    noop = """
rollback:
  - id: noop
    run: ["{python}", "-c", "pass"]
    timeout_s: 60
"""
    flag = """
rollback:
  - id: legacy
    set_flag: {name: USE_SETTINGS_V2, value: false}
"""
    gate = """
gate:
  - id: tool
    check: command
    with: {argv: ["{python}", "-c", "print('ready')"], output_pattern: "ready"}
"""
    repo.phase("00-noop.yaml", simple_phase(0, "noop", gate=gate, extra=noop))
    repo.phase("01-flag.yaml", simple_phase(1, "flag", gate=gate, extra=flag))
    repo.commit_all("phases")
    roadmap = load_roadmap(repo.phases, write_index=False)
    layout = ProofsLayout(repo.proofs)
    lines: list[str] = []
    manifest, bundle = selftest.selftest_phase(roadmap.get(0), repo.root, layout, fast=True, out=lines.append)
    assert manifest.verdict.value == "FAIL", manifest.reasons
    assert any("rollback step noop does not act" in r for r in manifest.reasons), manifest.reasons
    assert selftest.verify(bundle) == []
    assert "rollback rehearsed: 1 failed" in selftest.summary(roadmap.get(0), layout, repo.root)
    manifest, bundle = selftest.selftest_phase(roadmap.get(1), repo.root, layout, fast=True, out=lines.append)
    record = json.loads((bundle / selftest.RECORD).read_text(encoding="utf-8"))
    (step,) = record["rollback"]
    assert step["result"] == "acted" and (bundle / step["log"]).is_file(), step
    # the selftest's "inline command" control is not applicable, so the verdict is not PASS, but the
    # rehearsal adds no reason of its own when it acted
    assert not any("rollback" in r for r in manifest.reasons), manifest.reasons
    assert selftest.verify(bundle) == []
    # a recorded rehearsal edited to look better no longer re-decides to the recorded verdict
    _, failed = selftest.selftest_phase(roadmap.get(0), repo.root, layout, fast=True, cache=True, out=lines.append)
    forged = json.loads((failed / selftest.RECORD).read_text(encoding="utf-8"))
    forged["rollback"][0]["result"] = "acted"
    (failed / selftest.RECORD).write_text(json.dumps(forged), encoding="utf-8")
    assert selftest.verify(failed), "an edited record must not verify"
