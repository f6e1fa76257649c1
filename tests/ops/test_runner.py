from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from montage.ops import bundle as bundles
from montage.ops.checks import KINDS

from .conftest import Repo, simple_phase
from .forge import forge

PARTIAL_GATE = """
gate:
  - id: ok
    check: command
    with: {argv: ["{python}", "-c", "print('fine')"]}
bundle: [pytest_summary.txt]
"""
FAIL_GATE = """
gate:
  - id: bad
    check: command
    with: {argv: ["{python}", "-c", "raise SystemExit(2)"]}
  - id: soft
    check: command
    critical: false
    with: {argv: ["{python}", "-c", "raise SystemExit(2)"]}
"""
SOFT_GATE = """
gate:
  - id: soft
    check: command
    critical: false
    with: {argv: ["{python}", "-c", "raise SystemExit(2)"]}
"""


def status_of(repo: Repo, capsys: pytest.CaptureFixture[str]) -> dict[int, dict[str, object]]:
    capsys.readouterr()
    assert repo.ops("status", "--json") == 0
    return {row["id"]: row for row in json.loads(capsys.readouterr().out)}


def test_run_pass_bundle_layout_and_verify(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = two_phases
    assert repo.ops("run", "0") == 0
    out = capsys.readouterr().out
    assert "phase 0 (first) run: PASS" in out
    latest = repo.proofs / "phase-00" / "latest"
    for name in ("manifest.json", "manifest.sha256", "phase.json", "summary.md", "evidence/ok/command.json"):
        assert (latest / name).is_file(), name
    manifest = json.loads((latest / "manifest.json").read_text())
    assert manifest["verdict"] == "PASS" and manifest["forced"] is False
    assert set(manifest["git"]) == {"commit", "dirty"}
    assert manifest["inputs"]["files"] and list(manifest["inputs"]["files"]) == ["src/app.py"]
    assert manifest["tools"]["python"] and manifest["host"]["id"]
    assert set(manifest["files"]) >= {"summary.md", "phase.json", "evidence/ok/output.txt"}
    assert "# Phase 0: Phase 0 — PASS" in (latest / "summary.md").read_text()
    runs = list((repo.proofs / "phase-00" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "manifest.json").read_bytes() == (latest / "manifest.json").read_bytes()
    assert not list((repo.proofs / "phase-00").glob(".tmp-*"))
    assert status_of(repo, capsys)[0]["state"] == "PASS"
    assert repo.ops("verify", "0") == 0
    assert "VERIFIED" in capsys.readouterr().out


def test_successive_gating_refuses_then_force_is_recorded(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = two_phases
    assert repo.ops("run", "1") == 6
    out = capsys.readouterr().out
    assert "refused" in out and "phase 0 (first) is NOT RUN" in out
    assert not (repo.proofs / "phase-01" / "latest").exists()
    assert repo.ops("run", "1", "--force") == 0
    assert "OVERRIDDEN with --force" in capsys.readouterr().out
    manifest = json.loads((repo.proofs / "phase-01" / "latest" / "manifest.json").read_text())
    assert manifest["forced"] is True and "phase 0" in manifest["forced_reasons"][0]
    assert "run with --force" in (repo.proofs / "phase-01" / "latest" / "summary.md").read_text()
    st = status_of(repo, capsys)[1]
    assert st["state"] == "OVERRIDDEN" and st["forced"] is True
    assert repo.ops("run", "0") == 0
    assert repo.ops("run", "1") == 0
    assert status_of(repo, capsys)[1]["state"] == "PASS"


def test_only_pass_satisfies_dependencies(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first", gate=PARTIAL_GATE))
    repo.phase("01-second.yaml", simple_phase(1, "second"))
    assert repo.ops("run", "0") == 4
    out = capsys.readouterr().out
    assert "PARTIAL" in out and "artifact pytest_summary.txt is missing" in out
    assert repo.ops("run", "1") == 6
    assert "phase 0 (first) is PARTIAL" in capsys.readouterr().out


def test_gate_verdicts_fail_and_partial(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first", gate=FAIL_GATE))
    repo.phase("01-soft.yaml", simple_phase(1, "soft", gate=SOFT_GATE))
    repo.phase("02-empty.yaml", simple_phase(2, "empty", gate="gate: []\n"))
    assert repo.ops("gate", "0") == 1
    capsys.readouterr()
    assert repo.ops("gate", "1", "--json") == 4
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "PARTIAL" and "non-critical" in data["reasons"][0]
    assert repo.ops("gate", "2") == 4
    assert "the gate has no checks yet" in capsys.readouterr().out
    # gate mode judges only: it keeps a bundle under runs/ but never publishes latest/
    assert not (repo.proofs / "phase-01" / "latest").exists()
    assert list((repo.proofs / "phase-01" / "runs").iterdir())


def test_failing_step_stops_the_run_and_is_recorded(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    steps = """
    steps:
      - {id: first, run: ["{python}", "-c", "print('step one')"], timeout_s: 30}
      - {id: broken, run: ["{python}", "-c", "import sys; print('bad thing'); sys.exit(9)"], timeout_s: 30}
      - {id: never, run: ["{python}", "-c", "open('never-ran', 'w')"], timeout_s: 30}
    """
    repo.phase("00-first.yaml", simple_phase(0, "first", extra=steps))
    assert repo.ops("run", "0") == 1
    manifest = json.loads((repo.proofs / "phase-00" / "latest" / "manifest.json").read_text())
    assert [s["id"] for s in manifest["steps"]] == ["first", "broken"]
    assert manifest["steps"][1]["exit_code"] == 9
    assert "step broken failed (exit code 9): bad thing" in manifest["reasons"][0]
    assert manifest["checks"] == [] and not (repo.root / "never-ran").exists()
    assert "step one" in (repo.proofs / "phase-00" / "latest" / "steps" / "first.log").read_text()
    assert repo.ops("verify", "0") == 0


def test_step_timeout_and_missing_tool(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.phase(
        "00-first.yaml",
        simple_phase(
            0,
            "first",
            extra='steps:\n  - {id: slow, run: ["{python}", "-c", "import time; time.sleep(20)"], timeout_s: 0.5}\n',
        ),
    )
    repo.phase(
        "01-second.yaml",
        simple_phase(1, "second", extra='steps:\n  - {id: tool, run: ["no-such-tool-xyz"], timeout_s: 5}\n'),
    )
    assert repo.ops("run", "0") == 1
    assert "timed out after 0.5s" in capsys.readouterr().out
    assert repo.ops("run", "1", "--force") == 1
    assert "could not start" in capsys.readouterr().out


def test_dry_run_writes_nothing(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    before = two_phases.snapshot()
    assert two_phases.ops("run", "1", "--dry-run", "--force") == 0
    out = capsys.readouterr().out
    assert "would run" in out and "check ok: command" in out and "forced past" in out
    after = two_phases.snapshot()
    after.pop("phases/.index.json", None)
    before.pop("phases/.index.json", None)
    assert after == before and not two_phases.proofs.exists()


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        ("modify", "evidence/ok/output.txt was modified"),
        ("delete", "evidence/ok/output.txt was deleted"),
        ("add", "extra.txt was added"),
        ("manifest", "manifest.json was modified"),
    ],
)
def test_tampering_is_named_and_status_tampered(
    two_phases: Repo, capsys: pytest.CaptureFixture[str], edit: str, fragment: str
) -> None:
    repo = two_phases
    assert repo.ops("run", "0") == 0
    latest = repo.proofs / "phase-00" / "latest"
    target = latest / "evidence" / "ok" / "output.txt"
    if edit == "modify":
        target.write_text("fine, honestly\n")
    elif edit == "delete":
        target.unlink()
    elif edit == "add":
        (latest / "extra.txt").write_text("x")
    else:
        text = (latest / "manifest.json").read_text().replace('"verdict": "PASS"', '"verdict": "FAIL"')
        (latest / "manifest.json").write_text(text)
    capsys.readouterr()
    assert repo.ops("verify", "0") == 5
    assert fragment in capsys.readouterr().out
    st = status_of(repo, capsys)[0]
    assert st["state"] == "TAMPERED" and any(fragment in r for r in st["reasons"])
    assert repo.ops("run", "1") == 6  # a tampered PASS satisfies nothing


def test_rejudge_catches_a_consistent_forgery(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """Edit evidence AND re-hash the manifest: only re-judging can notice."""
    repo = two_phases
    repo.phase("00-first.yaml", simple_phase(0, "first", gate=FAIL_GATE.split("  - id: soft")[0]))
    assert repo.ops("run", "0") == 1
    latest = repo.proofs / "phase-00" / "latest"
    record = latest / "evidence" / "bad" / "command.json"
    record.write_text(record.read_text().replace('"exit_code": 2', '"exit_code": 0'))
    forge(latest, lambda m: None, rehash_files=True)
    assert repo.ops("verify", "0") == 5
    assert "check bad: re-judging evidence/bad gives PASS" in capsys.readouterr().out


def test_stale_after_input_change_but_not_after_commit(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = two_phases
    assert repo.ops("run", "0") == 0
    repo.commit_all("add bundle")  # committing the bundle (and everything else) keeps it current
    assert status_of(repo, capsys)[0]["state"] == "PASS"
    assert repo.ops("run", "0") == 0  # replaces the committed latest/: the tree is not "dirty" for that
    manifest = json.loads((repo.proofs / "phase-00" / "latest" / "manifest.json").read_text())
    assert manifest["git"]["dirty"] is False
    repo.write("src/app.py", "def add(a, b):\n    return a + b  # edited\n")
    capsys.readouterr()
    assert repo.ops("gate", "0", "--json") == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "PASS"
    run_dirs = sorted((repo.proofs / "phase-00" / "runs").iterdir())  # names sort by creation time
    newest = json.loads((run_dirs[-1] / "manifest.json").read_text())
    assert newest["mode"] == "gate" and newest["git"]["dirty"] is True
    repo.write("src/app.py", "def add(a, b):\n    return a + b\n")
    repo.write("src/app.py", "def add(a, b):\n    return b + a\n")
    st = status_of(repo, capsys)[0]
    assert st["state"] == "STALE" and "changed src/app.py" in st["reasons"][0]
    repo.write("src/new.py", "x = 1\n")
    assert "added src/new.py" in status_of(repo, capsys)[0]["reasons"][0]
    assert repo.ops("run", "1") == 6
    repo.write("src/app.py", "def add(a, b):\n    return a + b\n")
    (repo.root / "src" / "new.py").unlink()
    assert status_of(repo, capsys)[0]["state"] == "PASS"
    repo.phase("00-first.yaml", simple_phase(0, "first", extra='inputs: ["src/*"]\n').replace("Phase 0", "Renamed"))
    st = status_of(repo, capsys)[0]
    assert st["state"] == "STALE" and "definition" in st["reasons"][0]


def test_lock_refuses_a_concurrent_run(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    layout = bundles.ProofsLayout(two_phases.proofs)
    with bundles.phase_lock(layout, 0):
        assert two_phases.ops("run", "0") == 6
        assert "already running" in capsys.readouterr().err
    assert two_phases.ops("run", "0") == 0


def test_crashing_kind_is_an_error_result(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(KINDS, "crash", "tests.ops.kinds_for_tests")
    repo.phase(
        "00-first.yaml", simple_phase(0, "first", gate="gate:\n  - {id: c, check: crash, with: {message: kaboom}}\n")
    )
    assert repo.ops("run", "0") == 1
    assert "crashed: RuntimeError: kaboom" in capsys.readouterr().out
    assert (repo.proofs / "phase-00" / "latest" / "evidence" / "c" / "exception.txt").is_file()
    assert repo.ops("verify", "0") == 0  # nothing to re-judge, but every file still re-hashes


def test_verify_all_and_missing_bundle(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = two_phases
    assert repo.ops("verify", "0") == 3
    assert repo.ops("run", "0") == 0
    capsys.readouterr()
    assert repo.ops("verify", "all", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in rows] == ["VERIFIED", "NOT RUN"]
    runs = next((repo.proofs / "phase-00" / "runs").iterdir())
    assert repo.ops("verify", "--bundle", str(runs)) == 0
    shutil.rmtree(runs / "evidence")
    assert repo.ops("verify", "--bundle", str(runs)) == 5
    assert repo.ops("verify") == 2


def test_retention_keeps_the_newest_runs(two_phases: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention applied by the gate runs themselves (bundle.commit), not by calling prune by hand."""
    monkeypatch.setattr(bundles, "KEEP_RUNS", 2)
    layout = bundles.ProofsLayout(two_phases.proofs)
    made = []
    for _ in range(4):
        assert two_phases.ops("gate", "0") == 0
        made.append(max(p.name for p in layout.runs(0).iterdir()))
    kept = sorted(p.name for p in layout.runs(0).iterdir())
    assert kept == made[-2:]  # exactly the configured number, and the newest ones
    assert all(bundles.load_manifest(layout.runs(0) / name).verdict == "PASS" for name in kept)


def test_list_and_status_human_and_json(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert two_phases.ops("list") == 0
    assert "first" in capsys.readouterr().out
    assert two_phases.ops("list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1]["depends_on"] == [0]
    assert two_phases.ops("status") == 0
    out = capsys.readouterr().out
    assert "NOT RUN" in out and "invoke phase.run 0" in out


def test_rollback_plan_then_execute(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    rollback = """
    rollback:
      - id: flag
        description: select the legacy loader
        set_flag: {name: USE_SETTINGS_V2, value: false}
      - id: note
        run: ["{python}", "-c", "print('reverted')"]
        timeout_s: 30
    """
    repo.phase("00-first.yaml", simple_phase(0, "first", extra=rollback))
    assert repo.ops("rollback", "0") == 0
    out = capsys.readouterr().out
    assert "1. flag: set flag USE_SETTINGS_V2=false" in out and "Nothing executed" in out
    assert not (repo.root / "var" / "flags.json").exists()
    assert repo.ops("rollback", "0", "--yes", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and [s["exit_code"] for s in data["steps"]] == [0, 0]
    assert json.loads((repo.root / "var" / "flags.json").read_text()) == {"USE_SETTINGS_V2": False}
    record = Path(data["record"])
    assert json.loads((record / "rollback.json").read_text())["ok"] is True
    assert "reverted" in (record / "note.log").read_text()


def test_rollback_stops_at_a_failing_step(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    rollback = """
    rollback:
      - {id: fails, run: ["{python}", "-c", "raise SystemExit(4)"], timeout_s: 30}
      - {id: later, run: ["{python}", "-c", "open('later-ran', 'w')"], timeout_s: 30}
    """
    repo.phase("00-first.yaml", simple_phase(0, "first", extra=rollback))
    repo.phase("01-second.yaml", simple_phase(1, "second"))
    assert repo.ops("rollback", "0", "--yes") == 1
    assert "STOPPED" in capsys.readouterr().out and not (repo.root / "later-ran").exists()
    assert repo.ops("rollback", "1") == 0
    assert "no rollback steps" in capsys.readouterr().out
    repo.phase(
        "01-second.yaml",
        simple_phase(1, "second", extra='rollback:\n  - {id: t, run: ["no-such-tool-xyz"], timeout_s: 5}\n'),
    )
    assert repo.ops("rollback", "1", "--yes") == 1
