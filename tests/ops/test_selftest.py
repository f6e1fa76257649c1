"""phase.selftest: every fast control makes its check FAIL in a throwaway worktree; the unchanged tree passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage.ops import selftest
from montage.ops.bundle import ProofsLayout
from montage.ops.loader import load_roadmap

from .conftest import Repo, simple_phase

FAST_GATE = """
inputs: ["src/*"]
gate:
  - id: tests
    check: pytest
    with: {args: ["-q", "-p", "no:cacheprovider", "tests"]}
  - id: no-hacks
    check: import_hacks
    with: {include: ["src/*.py"]}
  - id: no-stubs
    check: stub_scan
    with: {include: ["src/*.py"]}
  - id: tool
    check: command
    with: {argv: ["{python}", "tool.py"], output_pattern: "ready"}
  - id: report
    check: file
    with: {path: "report.json"}
  - id: log
    check: log_contains
    with: {path: "logs/app.log", pattern: "started"}
"""
# A test selection that leaves out anything added to the file, and a command with nothing in the tree.
BLIND_GATE = """
gate:
  - id: one-test
    check: pytest
    with: {args: ["-q", "-p", "no:cacheprovider", "tests/test_app.py::test_add"]}
  - id: inline
    check: command
    with: {argv: ["{python}", "-c", "print('fine')"]}
"""


@pytest.fixture
def product(repo: Repo) -> Repo:
    repo.write("tests/test_app.py", "def test_add() -> None:\n    assert 1 + 1 == 2\n")
    repo.write("tool.py", "print('ready')\n")
    repo.write("report.json", '{"ok": true}\n')
    repo.write("logs/app.log", "2026-12-01 service started\n")
    repo.phase("00-fast.yaml", simple_phase(0, "fast", gate=FAST_GATE))
    repo.phase("01-blind.yaml", simple_phase(1, "blind", gate=BLIND_GATE))
    repo.commit_all()
    return repo


def _outcomes(bundle: Path) -> dict[tuple[str, str], dict[str, object]]:
    record = json.loads((bundle / selftest.RECORD).read_text(encoding="utf-8"))
    return {(o["check"], o["control"]): o for o in record["outcomes"]}


def test_fast_controls_fail_every_check_and_the_unchanged_tree_passes(product: Repo) -> None:
    roadmap = load_roadmap(product.phases, write_index=False)
    layout = ProofsLayout(product.proofs)
    lines: list[str] = []
    manifest, bundle = selftest.selftest_phase(roadmap.get(0), product.root, layout, fast=True, out=lines.append)
    outcomes = _outcomes(bundle)
    for check in ("tests", "no-hacks", "no-stubs", "tool", "report", "log"):
        control = next(o for (c, name), o in outcomes.items() if c == check and name != "unchanged")
        assert control["verdict"] == "FAIL" and control["ok"] is True, control
        assert outcomes[(check, "unchanged")]["verdict"] == "PASS", outcomes[(check, "unchanged")]
    assert manifest.mode == "selftest" and manifest.verdict.value == "PASS", manifest.reasons
    assert selftest.verify(bundle) == []
    assert product.git("status", "--porcelain") == "?? proofs/\n"  # controls touched throwaway worktrees only
    assert product.git("worktree", "list").count("\n") == 1
    # cached by definition + inputs: the second call reuses the bundle; a changed input makes it stale
    again, same = selftest.selftest_phase(roadmap.get(0), product.root, layout, fast=True, out=lines.append)
    assert same == bundle and again == manifest
    assert "self-test PASS (fast controls" in selftest.summary(roadmap.get(0), layout, product.root)
    product.write("src/app.py", "def add(a, b):\n    return b + a\n")
    assert "self-test STALE PASS" in selftest.summary(roadmap.get(0), layout, product.root)


def test_a_check_whose_control_passes_is_shown_unable_to_fail(
    product: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert product.ops("selftest", "1", "--fast") == 1
    out = capsys.readouterr().out
    assert "one-test [pytest] control failing-test: PASS (UNABLE TO FAIL)" in out
    assert "one-test is unable to fail" in out
    assert "inline is not self-tested (silent: not applicable" in out
    layout = ProofsLayout(product.proofs)
    bundle = selftest.latest(layout, 1)
    assert bundle is not None and selftest.verify(bundle) == []
    assert product.ops("status") == 0
    status = capsys.readouterr().out
    assert "self-test FAIL (fast controls" in status and "1 check(s) unable to fail" in status
    assert "not self-tested: run `invoke phase.selftest 0`" in status
    # re-judging catches an edited verdict even when every hash is recomputed
    evidence = next((bundle / "evidence").glob("one-test.control-*"))
    junit = next(p for p in evidence.iterdir() if p.suffix == ".xml")
    junit.write_text(junit.read_text(encoding="utf-8").replace('failures="0"', 'failures="1"'), encoding="utf-8")
    assert selftest.verify(bundle)


def test_the_real_scan_checks_fail_on_their_controls(tmp_path: Path) -> None:
    """CI's fast controls on this repository's own phases: every import_hacks / stub_scan check fails on its control."""
    root = Path(__file__).resolve().parents[2]
    roadmap = load_roadmap(root / "phases", write_index=False)
    scans = [
        (lp.phase.id, c) for lp in roadmap.ordered() for c in lp.phase.gate if c.check in ("import_hacks", "stub_scan")
    ]
    assert scans
    for phase_id, check in scans:
        outcomes, results = selftest._selftest_check(root, check, phase_id, tmp_path, True, lambda line: None)
        control, unchanged = outcomes[0], outcomes[-1]
        assert control.ok is True and control.verdict == "FAIL", control
        assert unchanged.control == "unchanged" and unchanged.verdict == "PASS", unchanged


def test_unchanged_runs_come_from_the_current_pass_bundle_and_controls_stop_at_their_first_failure(
    product: Repo,
) -> None:
    product.write("tests/test_more.py", "def test_more() -> None:\n    assert 2 * 2 == 4\n")
    product.commit_all("two test files")
    assert product.ops("run", "0") == 0
    roadmap = load_roadmap(product.phases, write_index=False)
    layout = ProofsLayout(product.proofs)
    manifest, bundle = selftest.selftest_phase(roadmap.get(0), product.root, layout, fast=True, out=lambda _: None)
    assert manifest.verdict.value == "PASS" and selftest.verify(bundle) == [], manifest.reasons
    outcomes = _outcomes(bundle)
    for check in ("tests", "no-hacks", "tool", "report"):
        unchanged = outcomes[(check, "unchanged")]
        assert str(unchanged["change"]).startswith("reused from the current PASS run bundle"), unchanged
        assert (bundle / "evidence" / f"{check}.unchanged").is_dir()
    by_id = {r.id: r for r in manifest.checks}
    assert by_id["tests.unchanged"].value["tests"] == 2  # the run bundle's whole run
    control = by_id["tests.control-failing-test"]
    assert control.verdict.value == "FAIL" and control.value["tests"] == 1  # stopped at the control's test
    argv = json.loads((bundle / control.evidence_dir / "pytest.json").read_text(encoding="utf-8"))["argv"]
    assert "--exitfirst" in argv
    # a run bundle that no longer verifies is not reused: the unchanged tree is run again
    run_junit = product.proofs / "phase-00" / "latest" / "evidence" / "tests" / "junit.xml"
    run_junit.write_text(run_junit.read_text(encoding="utf-8").replace('tests="2"', 'tests="3"'), encoding="utf-8")
    _, again = selftest.selftest_phase(roadmap.get(0), product.root, layout, fast=True, cache=False, out=lambda _: None)
    assert _outcomes(again)[("tests", "unchanged")]["change"] == ""
    assert selftest.verify(again) == []


OWN_CONTROLS_GATE = """
gate:
  - id: inline
    check: command
    with: {argv: ["{python}", "-c", "import src.app as a; print('sum', a.add(2, 2))"], output_pattern: "sum 4$"}
    controls:
      - name: wrong-sum
        description: "add() subtracts"
        append: {src/app.py: "\\n\\ndef add(a, b):\\n    return a - b\\n"}
        fast: true
  - id: tests
    check: pytest
    with: {args: ["-q", "-p", "no:cacheprovider", "tests/test_app.py::test_add"]}
    controls:
      - name: failing-test
        description: "the selected test itself is broken"
        append: {tests/test_app.py: "\\n\\ndef test_add() -> None:\\n    assert 1 + 1 == 3\\n"}
        fast: true
"""


def test_a_phase_file_adds_and_overrides_controls(product: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """The blind gate's checks could not fail on their defaults; the phase file's own controls make them."""
    product.write("src/__init__.py", "")
    product.phase("02-own.yaml", simple_phase(2, "own", gate=OWN_CONTROLS_GATE))
    product.commit_all("own controls")
    assert product.ops("selftest", "2", "--fast") == 0
    out = capsys.readouterr().out
    assert "inline [command] control wrong-sum: FAIL (fails as it must) - src/app.py: appended to" in out
    assert "tests [pytest] control failing-test: FAIL (fails as it must)" in out
    bundle = selftest.latest(ProofsLayout(product.proofs), 2)
    assert bundle is not None and selftest.verify(bundle) == []
    outcomes = _outcomes(bundle)
    assert [name for check, name in outcomes if check == "tests"] == ["failing-test", "unchanged"]  # replaced
    assert outcomes[("inline", "silent")]["change"].startswith("not applicable")  # the default, still listed


@pytest.mark.parametrize("path", ["../outside.py", "/etc/passwd", ".git/config", "proofs/phase-00/x"])
def test_a_control_writing_outside_the_product_is_refused_at_load(
    product: Repo, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = OWN_CONTROLS_GATE.replace("src/app.py:", f"{path}:", 1)
    product.phase("02-own.yaml", simple_phase(2, "own", gate=gate))
    assert product.ops("status") == 2
    err = capsys.readouterr().err
    assert "02-own.yaml" in err and repr(path) in err and "inside the repository" in err


def test_the_real_phase_0_command_checks_fail_on_their_own_controls(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    phase = load_roadmap(root / "phases", write_index=False).get(0).phase
    for check in (c for c in phase.gate if c.id in ("ruff", "ruff-format", "help-import-time")):
        outcomes, _ = selftest._selftest_check(root, check, 0, tmp_path, True, lambda line: None)
        mine = {o.control: o for o in outcomes}
        own = next(o for o in outcomes if o.control not in ("silent", "unchanged"))
        assert own.ok is True and own.verdict == "FAIL", own
        assert mine["unchanged"].verdict == "PASS", mine["unchanged"]
