"""Status and ``depends_on`` trust only what they re-judged (issue 12, "Trust in proofs" 1-4).

Each forgery here is made the way anyone who can write the files can (:func:`forge`): edit
manifest.json and recompute the hashes.  Signatures (not built yet) are what stops a forger who also
re-judges consistently; these tests pin down what re-judging alone must catch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from montage.ops import status as status_mod

from .conftest import Repo, simple_phase
from .forge import forge
from .test_runner import PARTIAL_GATE, status_of


def latest(repo: Repo, pid: int) -> Path:
    return repo.proofs / f"phase-{pid:02d}" / "latest"


def verify_out(repo: Repo, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = repo.ops("verify", *args)
    return code, capsys.readouterr().out


@pytest.fixture
def partial_then_next(repo: Repo) -> Repo:
    repo.phase("00-first.yaml", simple_phase(0, "first", gate=PARTIAL_GATE))
    repo.phase("01-second.yaml", simple_phase(1, "second"))
    assert repo.ops("run", "0") == 4
    return repo


def _to_pass(m: dict[str, Any]) -> None:
    m["verdict"] = "PASS"
    m["reasons"] = []


def test_partial_edited_to_pass_and_rehashed_is_tampered_and_unlocks_nothing(
    partial_then_next: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = partial_then_next
    forge(latest(repo, 0), _to_pass)  # the two-line forgery: verdict PASS, manifest.sha256 recomputed
    st = status_of(repo, capsys)[0]
    assert st["state"] == "TAMPERED"
    assert any("re-judging gives PARTIAL but manifest.json says PASS" in r for r in st["reasons"])
    capsys.readouterr()
    assert repo.ops("run", "1") == 6
    assert "phase 0 (first) is TAMPERED" in capsys.readouterr().out
    assert not latest(repo, 1).exists()
    code, out = verify_out(repo, capsys, "0")
    assert code == 5 and "re-judging gives PARTIAL" in out


def test_planted_artifact_with_recomputed_hashes_does_not_verify(
    partial_then_next: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = partial_then_next
    bundle = latest(repo, 0)
    (bundle / "evidence" / "ok" / "pytest_summary.txt").write_text("120 passed\n")

    def plant(m: dict[str, Any]) -> None:
        _to_pass(m)
        m["artifacts"] = {"pytest_summary.txt": "evidence/ok/pytest_summary.txt"}
        m["checks"][0]["evidence"].append("pytest_summary.txt")

    forge(bundle, plant, rehash_files=True)
    code, out = verify_out(repo, capsys, "0")
    assert code == 5, out
    assert "TAMPERED" in out and "VERIFIED" not in out
    assert status_of(repo, capsys)[0]["state"] == "TAMPERED"


def test_bundle_copied_from_another_phase_is_tampered_not_stale(
    two_phases: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = two_phases
    assert repo.ops("run", "0") == 0
    shutil.copytree(latest(repo, 0), latest(repo, 1))
    st = status_of(repo, capsys)[1]
    assert st["state"] == "TAMPERED", st
    assert "a bundle of phase 0 (first), not of phase 1" in st["reasons"][0]
    code, out = verify_out(repo, capsys, "1")
    assert code == 5 and "not of phase 1" in out
    code, out = verify_out(repo, capsys, "--bundle", str(latest(repo, 1)))
    assert code == 5


def test_gate_bundle_placed_in_latest_is_tampered(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = two_phases
    assert repo.ops("gate", "0") == 0
    run = next((repo.proofs / "phase-00" / "runs").iterdir())
    shutil.copytree(run, latest(repo, 0))
    assert status_of(repo, capsys)[0]["state"] == "TAMPERED"
    assert repo.ops("run", "1") == 6


@pytest.mark.parametrize("where", ["file", "directory", "manifest"])
def test_symlink_to_an_identical_copy_outside_the_bundle_is_refused(
    two_phases: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str
) -> None:
    repo = two_phases
    assert repo.ops("run", "0") == 0
    bundle = latest(repo, 0)
    target = {"file": bundle / "evidence" / "ok" / "output.txt", "directory": bundle / "evidence" / "ok"}.get(
        where, bundle / "manifest.json"
    )
    outside = tmp_path / "outside" / target.name
    outside.parent.mkdir()
    (shutil.copytree if target.is_dir() else shutil.copy2)(target, outside)
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.symlink_to(outside)
    code, out = verify_out(repo, capsys, "0")
    assert code == 5 and "symlink" in out, out
    assert status_of(repo, capsys)[0]["state"] == "TAMPERED"


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["checks"].append({"id": "ok"}),  # a check entry missing its fields
        lambda m: m["checks"].__setitem__(0, "not an object"),
        lambda m: m["checks"][0].__setitem__("verdict", "MAYBE"),
        lambda m: m["checks"][0].__setitem__("evidence_dir", "../../../elsewhere"),
        lambda m: m.__setitem__("checks", {"ok": 1}),
        lambda m: m.__setitem__("verdict", "INCONCLUSIVE"),  # not a gate verdict
        lambda m: m.__setitem__("signed_by", "me"),  # an unknown key: a manifest is evidence
    ],
    ids=["missing-fields", "not-object", "bad-verdict", "escapes-bundle", "checks-not-list", "gate-verdict", "extra"],
)
def test_malformed_manifest_is_tampered_exit_5_not_internal_error(
    two_phases: Repo, capsys: pytest.CaptureFixture[str], edit: Any
) -> None:
    repo = two_phases
    assert repo.ops("run", "0") == 0
    forge(latest(repo, 0), edit)
    code, out = verify_out(repo, capsys, "0")
    assert code == 5, out
    assert "manifest.json is malformed" in out
    assert status_of(repo, capsys)[0]["state"] == "TAMPERED"
    assert repo.ops("run", "1") == 6


OK_AND_BAD = """
gate:
  - id: ok
    check: command
    with: {argv: ["{python}", "-c", "print('fine')"]}
  - id: bad
    check: command
    with: {argv: ["{python}", "-c", "raise SystemExit(2)"]}
"""


def _drop_failing(m: dict[str, Any]) -> None:
    m["checks"] = [c for c in m["checks"] if c["id"] != "bad"]
    _to_pass(m)


def _soften(m: dict[str, Any]) -> None:
    m["checks"][1]["critical"] = False
    m["verdict"] = "PARTIAL"
    m["reasons"] = [r.replace("critical)", "non-critical)") for r in m["reasons"]]


def _unmeasured_pass(m: dict[str, Any]) -> None:
    m["checks"][1].update(measured=False, verdict="PASS")
    _to_pass(m)


@pytest.mark.parametrize("edit", [_drop_failing, _soften, _unmeasured_pass], ids=["dropped", "softened", "unmeasured"])
def test_consistent_edits_of_a_fail_are_caught(repo: Repo, capsys: pytest.CaptureFixture[str], edit: Any) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first", gate=OK_AND_BAD))
    repo.phase("01-second.yaml", simple_phase(1, "second"))
    assert repo.ops("run", "0") == 1
    forge(latest(repo, 0), edit)
    code, out = verify_out(repo, capsys, "0")
    assert code == 5 and "TAMPERED" in out, out
    assert status_of(repo, capsys)[0]["state"] == "TAMPERED"
    assert repo.ops("run", "1") == 6


def test_status_caches_rejudgement_by_manifest_hash(
    two_phases: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = two_phases
    assert repo.ops("run", "0") == 0
    assert status_of(repo, capsys)[0]["state"] == "PASS"
    assert list((repo.proofs / ".cache" / "verify").glob("*.json"))
    calls: list[Path] = []
    real = status_mod.rejudge_problems
    monkeypatch.setattr(status_mod, "rejudge_problems", lambda b, m: calls.append(b) or real(b, m))
    assert status_of(repo, capsys)[0]["state"] == "PASS"
    assert calls == []  # served from the cache
    forge(latest(repo, 0), lambda m: m.__setitem__("finished_at", "2000-01-01T00:00:00Z"))
    assert status_of(repo, capsys)[0]["state"] == "PASS"
    assert len(calls) == 1  # a new manifest hash is re-judged
    (latest(repo, 0) / "evidence" / "ok" / "output.txt").write_text("edited\n")
    assert status_of(repo, capsys)[0]["state"] == "TAMPERED"  # the re-hash is never cached


def test_verify_json_names_problems(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = two_phases
    assert repo.ops("run", "0") == 0
    forge(latest(repo, 0), lambda m: m.__setitem__("phase_id", 1))
    capsys.readouterr()
    assert repo.ops("verify", "0", "--json") == 5
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["state"] == "TAMPERED" and "not of phase 0" in rows[0]["problems"][0]
