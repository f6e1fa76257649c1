"""Each step of :func:`montage.ops.runner.execute` on its own (values in, values out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from montage.errors import ExitCode
from montage.ops import runner
from montage.ops.manifest import GateVerdict, Manifest
from montage.ops.verdict import Verdict

from .conftest import Repo, simple_phase

STEPS = """
steps:
  - {id: one, run: ["{python}", "-c", "print('one')"], timeout_s: 30}
  - {id: two, run: ["{python}", "-c", "import sys; print('broke'); sys.exit(3)"], timeout_s: 30}
  - {id: three, run: ["{python}", "-c", "print('never')"], timeout_s: 30}
"""


def opts(repo: Repo, pid: int, **kw: object) -> runner.RunOptions:
    return runner.RunOptions(repo.root, repo.phases, repo.proofs, pid, **kw)  # type: ignore[arg-type]


def test_dependencies_refuse_force_and_gate(two_phases: Repo) -> None:
    lines: list[str] = []
    o = opts(two_phases, 1)
    roadmap = runner.load(o)
    lp = runner.resolve_phase(roadmap, o)
    assert runner.check_dependencies(roadmap, lp, o, lines.append) == ExitCode.REFUSED
    assert "refused" in lines[0] and "phase 0 (first) is NOT RUN" in lines[0]
    forced = runner.check_dependencies(roadmap, lp, opts(two_phases, 1, force=True), lines.append)
    assert isinstance(forced, list) and forced[0].startswith("phase 0 (first) is NOT RUN")
    assert runner.check_dependencies(roadmap, lp, opts(two_phases, 1, mode="gate"), lines.append) == []


def test_run_steps_stops_at_the_first_failure(repo: Repo, tmp_path: Path) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first", extra=STEPS))
    o = opts(repo, 0)
    phase = runner.resolve_phase(runner.load(o), o).phase
    work = tmp_path / "bundle"
    (work / "steps").mkdir(parents=True)
    done = runner.run_steps(phase, o, work, lambda _: None)
    assert [r.id for r in done.records] == ["one", "two"] and done.records[1].exit_code == 3
    assert done.failure is not None and done.failure.startswith("step two failed (exit code 3): broke")
    assert "one" in (work / "steps" / "one.log").read_text()
    assert runner.run_steps(phase, opts(repo, 0, mode="gate"), work, lambda _: None) == runner.StepsRun()
    judged = runner.judge_gate(phase, o, work, done)
    assert judged.checks == [] and judged.gate.verdict is Verdict.FAIL


def test_judge_build_write_render_exit(two_phases: Repo, tmp_path: Path) -> None:
    o = opts(two_phases, 0)
    lp = runner.resolve_phase(runner.load(o), o)
    layout = o.layout
    layout.runs(0).mkdir(parents=True)
    work = layout.phase_dir(0) / ".tmp-test"
    work.mkdir()
    judged = runner.judge_gate(lp.phase, o, work, runner.StepsRun())
    assert [c.verdict for c in judged.checks] == [Verdict.PASS] and judged.gate.verdict is Verdict.PASS
    manifest = runner.build_manifest(lp, o, "2026-01-01T00:00:00Z", [], runner.StepsRun(), judged)
    assert Manifest.model_validate_json(manifest.to_json()) == manifest
    published = runner.write_bundle(lp.phase, o, work, manifest)
    assert published.bundle.parent == layout.runs(0) and (layout.latest(0) / "manifest.json").is_file()
    assert published.manifest.files and "summary.md" in published.manifest.files
    lines: list[str] = []
    assert runner.exit_code(runner.render_report(published, o, lines.append)) == ExitCode.OK
    assert lines[0] == "phase 0 (first) run: PASS"


@pytest.mark.parametrize(
    ("verdict", "code"), [(Verdict.PASS, ExitCode.OK), (Verdict.FAIL, ExitCode.FAIL), (Verdict.PARTIAL, 4)]
)
def test_exit_code_of_each_gate_verdict(two_phases: Repo, verdict: Verdict, code: int) -> None:
    o = opts(two_phases, 0)
    lp = runner.resolve_phase(runner.load(o), o)
    reasons = [] if verdict is Verdict.PASS else ["why"]
    gate = runner.Judged([], {}, GateVerdict(verdict=verdict, reasons=reasons))
    manifest = runner.build_manifest(lp, o, "2026-01-01T00:00:00Z", [], runner.StepsRun(), gate)
    assert runner.exit_code(manifest) == code


def test_dry_run_step_prints_the_plan(two_phases: Repo) -> None:
    lines: list[str] = []
    o = opts(two_phases, 1, dry_run=True)
    lp = runner.resolve_phase(runner.load(o), o)
    assert runner.dry_run(lp.phase, o, ["phase 0 is NOT RUN"], lines.append) == ExitCode.OK
    assert lines[0] == "phase 1 (second) would run:" and "forced past: phase 0 is NOT RUN" in lines[-1]
