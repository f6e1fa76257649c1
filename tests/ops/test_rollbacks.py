"""Rollbacks that act (issue 14 item 8): every real phase's rollback is executed for real and what it
claims to switch is observed switched; ``revert: bundle_commit`` reverts the commit the phase's PASS
bundle recorded, or refuses naming why (never "whatever HEAD is")."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from montage.ops import rehearsal_observers as obs
from montage.ops import rollback
from montage.ops.bundle import ProofsLayout
from montage.ops.loader import load_roadmap
from montage.ops.model import Phase

from .conftest import Repo, simple_phase

REAL_PHASES = Path(__file__).resolve().parents[2] / "phases"
ROADMAP = load_roadmap(REAL_PHASES, write_index=False)


# The component each rollback flag names, driven for real: (what it does before, what it does after);
# the observers are phase.selftest's rollback rehearsal's (montage/ops/rehearsal_observers.py).
OBSERVERS: dict[str, tuple[Callable[[Path], str], str, str]] = {
    "USE_SETTINGS_V2": (obs.observe_settings_source, "settings loader settings_v2", "settings loader legacy"),
    "API_SPLIT_ADMIN_PORT": (obs.observe_split_admin_port, "admin port None", "admin port 8001"),
    "ZOMBIE_REAPER_ENABLED": (obs.observe_reaper, "reaping orphans", "not reaping"),
    "PERF_GUARD_ENABLED": (obs.observe_perf_session, "perf session enabled", "perf session disabled"),
}
FLAG_ROLLBACKS = [
    (lp.phase.id, step.set_flag.name) for lp in ROADMAP.ordered() for step in lp.phase.rollback if step.set_flag
]


def test_every_phase_has_a_rollback_and_every_rollback_flag_an_observer() -> None:
    assert all(lp.phase.rollback for lp in ROADMAP.ordered())
    assert {name for _, name in FLAG_ROLLBACKS} <= set(OBSERVERS), "add the component's observer above"
    assert set(OBSERVERS) == set(obs.OBSERVERS)
    assert {lp.phase.id for lp in ROADMAP.ordered() if any(s.revert for s in lp.phase.rollback)} >= {0, 1, 2}


@pytest.mark.filterwarnings("ignore:USE_SETTINGS_V2=false:DeprecationWarning")
@pytest.mark.parametrize(("phase_id", "name"), FLAG_ROLLBACKS)
def test_the_real_rollback_switches_the_component_it_names(
    phase_id: int, name: str, repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phase.rollback N --yes` of the committed phase file, then the component reads the flag and acts."""
    for var in ("USE_SETTINGS_V2", "MONTAGE_DB__URL", "DATABASE_URL", "MONTAGE_DATA_DIR", "MONTAGE_SECRETS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MONTAGE_SECRETS_DIR", "")
    monkeypatch.setenv("MONTAGE_DATA_DIR", str(repo.root / "data"))  # no database: `flags set` writes the file
    flags_file = repo.root / "var" / "flags.json"  # the fixture's MONTAGE_OPS__FLAGS_FILE
    for path in REAL_PHASES.iterdir():  # the committed roadmap, in a scratch repository
        if path.suffix in {".yaml", ".txt"}:
            repo.phase(path.name, path.read_text(encoding="utf-8"))
    observe, before, after = OBSERVERS[name]
    assert observe(flags_file) == before
    code, record = _rollback(repo, phase_id, capsys)
    assert code == 0 and record["ok"] is True, record
    assert name in json.loads(flags_file.read_text())
    assert observe(flags_file) == after


# -- revert: bundle_commit ---------------------------------------------------------------------------

REVERT = """
rollback:
  - id: revert
    revert: bundle_commit
"""


def _roadmap(repo: Repo) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first", extra=REVERT))
    repo.phase("01-second.yaml", simple_phase(1, "second", extra=REVERT))
    repo.commit_all("phases")


def _head(repo: Repo) -> str:
    return repo.git("rev-parse", "HEAD").strip()


def _rollback(repo: Repo, phase_id: int, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    code = repo.ops("rollback", str(phase_id), "--yes", "--json")
    out, err = capsys.readouterr()
    assert "{" in out, f"exit {code}: {err}"
    return code, json.loads(out[out.index("{") :])


def test_revert_undoes_the_commit_the_bundle_recorded_not_head(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    _roadmap(repo)
    assert repo.ops("run", "0") == 0
    repo.write("src/app.py", "def add(a, b):\n    return a + b  # phase 1's change\n")
    repo.commit_all("phase 1: the change")
    change = _head(repo)
    assert repo.ops("run", "1") == 0
    repo.write("src/later.py", "LATER = 1\n")
    repo.commit_all("a later, unrelated commit")  # HEAD is not the phase's change

    code, record = _rollback(repo, 1, capsys)
    assert code == 0, json.dumps(record)[:3000]
    assert record["steps"][0]["argv"] == ["git", "revert", "--no-edit", change]  # type: ignore[index]
    assert "phase 1's change" not in (repo.root / "src" / "app.py").read_text()
    assert (repo.root / "src" / "later.py").is_file()  # HEAD's own change stays
    assert repo.git("log", "-1", "--format=%s").startswith('Revert "phase 1: the change"')
    # the commit also carried phase 0's bundle and a history line: the code is reverted, the evidence kept
    assert (repo.root / "proofs" / "phase-00" / "latest" / "manifest.json").is_file()
    assert repo.git("diff", "HEAD~1", "HEAD", "--name-only").split() == ["src/app.py"]


def test_revert_refuses_when_the_dependency_was_judged_on_the_same_commit(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    _roadmap(repo)
    assert repo.ops("run", "0") == 0 and repo.ops("run", "1") == 0
    head = _head(repo)
    code, record = _rollback(repo, 1, capsys)
    assert code == 6
    reason = str(record["steps"][0]["refused"])  # type: ignore[index]
    assert "not phase 1's own change" in reason and "phase 0 was already judged on the same commit" in reason
    assert _head(repo) == head  # nothing reverted
    capsys.readouterr()
    assert repo.ops("rollback", "1") == 0  # the dry run names the refusal before anyone says --yes
    assert "REFUSED: commit" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["no-bundle", "dirty-tree", "dirty-bundle", "missing-commit"])
def test_revert_refuses_naming_why(case: str, repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    _roadmap(repo)
    expected = {
        "no-bundle": "phase 0 has no PASS bundle",
        "dirty-tree": "uncommitted changes",
        "dirty-bundle": "recorded a dirty work tree",
        "missing-commit": "is not in this clone",
    }[case]
    if case == "dirty-bundle":
        repo.write("src/app.py", "uncommitted = True\n")
    if case != "no-bundle":
        assert repo.ops("run", "0") == 0
    if case == "dirty-bundle":
        repo.git("checkout", "--", "src/app.py")
    if case == "dirty-tree":
        repo.write("src/app.py", "uncommitted = True\n")
    if case == "missing-commit":  # the recorded commit is gone from this clone (history rewritten)
        repo.write("src/app.py", "x = 1\n")
        repo.git("commit", "-qam", "to be dropped")
        assert repo.ops("run", "0") == 0
        repo.git("reset", "-q", "--hard", "HEAD~1")
        repo.git("reflog", "expire", "--expire=now", "--all")
        repo.git("gc", "-q", "--prune=now")
    head = _head(repo)
    code, record = _rollback(repo, 0, capsys)
    assert code == 6 and expected in str(record["steps"][0]["refused"]), record  # type: ignore[index]
    assert _head(repo) == head


def test_plan_without_a_repository_names_no_commit() -> None:
    phase = Phase.model_validate({"id": 0, "slug": "a", "title": "t", "goal": "g", "rollback": [
        {"id": "r", "revert": "bundle_commit"}]})  # fmt: skip
    steps = rollback.plan(phase)
    assert steps[0]["argv"] == ["git", "revert", "--no-edit", "COMMIT"] and "refused" not in steps[0]
    assert rollback.plan(phase, Path("/nonexistent"), ProofsLayout(Path("/nonexistent/proofs")))[0]["refused"]


def test_revert_refuses_a_phase_run_right_after_its_dependency_on_the_same_code(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """Phases run back to back: phase 1 is judged on the commit that records phase 0's bundle, which
    carries no code; reverting it would undo nothing, and phase 1 gated no change of its own."""
    _roadmap(repo)
    assert repo.ops("run", "0") == 0
    repo.commit_all("proofs: phase 0 PASS bundle")  # only proofs/ changes
    assert repo.ops("run", "1") == 0
    repo.commit_all("proofs: phase 1 PASS bundle")
    head = _head(repo)
    code, record = _rollback(repo, 1, capsys)
    assert code == 6, record
    reason = str(record["steps"][0]["refused"])  # type: ignore[index]
    assert "changes nothing outside the bundles" in reason, reason
    assert _head(repo) == head  # nothing reverted


def test_revert_refuses_when_the_code_equals_the_dependencys(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """Phase 1's commit changes code, but back to what phase 0 was judged on: no change of phase 1's own."""
    _roadmap(repo)
    assert repo.ops("run", "0") == 0
    original = (repo.root / "src" / "app.py").read_text()
    repo.write("src/app.py", "def add(a, b):\n    return b + a\n")
    repo.commit_all("a change")
    repo.write("src/app.py", original)
    repo.commit_all("the change undone")  # a code commit whose tree equals the one phase 0 passed
    assert repo.ops("run", "1") == 0
    code, record = _rollback(repo, 1, capsys)
    assert code == 6, record
    reason = str(record["steps"][0]["refused"])  # type: ignore[index]
    assert "gated no change of its own" in reason, reason
