"""``phase.run`` and ``phase.gate`` as a list of small steps (the shape of nox's workflow).

load roadmap -> resolve phase -> check dependencies -> (dry run) -> run steps -> judge gate ->
write bundle -> render report -> exit code.  Each step takes the :class:`RunState` and returns it,
or an ``int`` exit code that ends the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from montage.core.files import canonical_json
from montage.core.proc import run_logged
from montage.errors import ExitCode, ToolMissing
from montage.ops import bundle as bundles
from montage.ops import fingerprint
from montage.ops.checks.base import CheckResult
from montage.ops.gate import find_artifacts, judge, run_checks
from montage.ops.loader import LoadedPhase, Roadmap, load_roadmap
from montage.ops.report import summary_markdown
from montage.ops.status import unsatisfied_dependencies

VERDICT_EXIT = {"PASS": ExitCode.OK, "FAIL": ExitCode.FAIL, "PARTIAL": ExitCode.PARTIAL}
Printer = Callable[[str], None]


@dataclass
class RunOptions:
    repo_root: Path
    phases_dir: Path
    proofs_dir: Path
    phase_id: int
    mode: str = "run"  # "run" or "gate"
    force: bool = False
    dry_run: bool = False


@dataclass
class RunState:
    opts: RunOptions
    out: Printer
    roadmap: Roadmap | None = None
    loaded: LoadedPhase | None = None
    forced_reasons: list[str] = field(default_factory=list)
    started_at: str = ""
    tmp: Path | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    step_failure: str | None = None
    checks: list[CheckResult] = field(default_factory=list)
    artifacts: dict[str, str | None] = field(default_factory=dict)
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    bundle: Path | None = None

    @property
    def layout(self) -> bundles.ProofsLayout:
        return bundles.ProofsLayout(self.opts.proofs_dir)

    @property
    def lp(self) -> LoadedPhase:
        assert self.loaded is not None
        return self.loaded


Step = Callable[[RunState], "RunState | int"]


def load(state: RunState) -> RunState:
    state.roadmap = load_roadmap(state.opts.phases_dir)
    return state


def resolve_phase(state: RunState) -> RunState:
    assert state.roadmap is not None
    state.loaded = state.roadmap.get(state.opts.phase_id)
    return state


def check_dependencies(state: RunState) -> RunState | int:
    if state.opts.mode == "gate":
        return state
    assert state.roadmap is not None
    missing = unsatisfied_dependencies(state.roadmap, state.lp.phase, state.layout, state.opts.repo_root)
    if missing and not state.opts.force:
        state.out(
            f"phase.run {state.lp.phase.id} refused: every phase in depends_on needs a current PASS bundle. "
            + "; ".join(missing)
            + f". Inspect with `invoke phase.gate {state.lp.phase.id}`, or override with --force "
            "(recorded in the bundle and shown in every status)."
        )
        return ExitCode.REFUSED
    state.forced_reasons = missing
    return state


def dry_run(state: RunState) -> RunState | int:
    if not state.opts.dry_run:
        return state
    phase = state.lp.phase
    state.out(f"phase {phase.id} ({phase.slug}) would {state.opts.mode}:")
    if state.opts.mode == "run":
        for step in phase.steps:
            state.out(f"  step {step.id}: {' '.join(step.argv())} (timeout {step.timeout_s:g}s)")
    for check in phase.gate:
        state.out(f"  check {check.id}: {check.check} {canonical_json(check.with_)}")
    state.out(f"  bundle artifacts: {', '.join(phase.bundle) or 'none'}")
    if state.forced_reasons:
        state.out("  forced past: " + "; ".join(state.forced_reasons))
    return ExitCode.OK


def run_steps(state: RunState) -> RunState:
    assert state.tmp is not None
    if state.opts.mode == "gate":
        return state
    for step in state.lp.phase.steps:
        rel = f"steps/{step.id}.log"
        state.out(f"step {step.id}: {' '.join(step.argv())}")
        try:
            done = run_logged(step.argv(), state.tmp / rel, state.opts.repo_root, step.timeout_s)
        except ToolMissing as exc:
            (state.tmp / rel).write_text(str(exc) + "\n", encoding="utf-8")
            state.steps.append(
                {
                    "id": step.id,
                    "argv": step.argv(),
                    "exit_code": None,
                    "duration_s": 0.0,
                    "timed_out": False,
                    "log": rel,
                }
            )
            state.step_failure = f"step {step.id} could not start: {exc}"
            return state
        state.steps.append(
            {
                "id": step.id,
                "argv": done.argv,
                "exit_code": done.returncode,
                "duration_s": round(done.duration_s, 3),
                "timed_out": done.timed_out,
                "log": rel,
            }
        )
        if done.returncode != 0:
            how = f"timed out after {step.timeout_s:g}s" if done.timed_out else f"exit code {done.returncode}"
            last = done.tail(1).strip()
            state.step_failure = f"step {step.id} failed ({how})" + (f": {last[:200]}" if last else "")
            return state
    return state


def judge_gate(state: RunState) -> RunState:
    assert state.tmp is not None
    if state.step_failure is None:
        state.checks = run_checks(state.lp.phase, state.opts.repo_root, state.tmp)
    state.artifacts = find_artifacts(state.tmp, state.lp.phase.bundle)
    state.verdict, state.reasons = judge(state.checks, state.artifacts, state.step_failure)
    return state


def write_bundle(state: RunState) -> RunState:
    assert state.tmp is not None
    phase = state.lp.phase
    inputs = fingerprint.input_files(state.opts.repo_root, phase.inputs)
    (state.tmp / "phase.json").write_text(
        canonical_json(phase.model_dump(mode="json", by_alias=True), indent=2) + "\n", encoding="utf-8"
    )
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "mode": state.opts.mode,
        "phase_id": phase.id,
        "phase_slug": phase.slug,
        "phase_title": phase.title,
        "phase_goal": phase.goal,
        "phase_file": state.lp.path.name,
        "definition_sha256": phase.definition_hash(),
        "started_at": state.started_at,
        "finished_at": bundles.utc_now(),
        "git": fingerprint.git_state(state.opts.repo_root, state.opts.proofs_dir),
        "host": fingerprint.host_fingerprint(),
        "tools": fingerprint.tool_versions(),
        "inputs": {"globs": phase.inputs, "fingerprint": fingerprint.combine(inputs), "files": inputs},
        "forced": bool(state.forced_reasons),
        "forced_reasons": state.forced_reasons,
        "steps": state.steps,
        "step_failure": state.step_failure,
        "checks": [c.model_dump(mode="json") for c in state.checks],
        "artifacts": state.artifacts,
        "verdict": state.verdict,
        "reasons": state.reasons,
    }
    (state.tmp / "summary.md").write_text(summary_markdown(manifest), encoding="utf-8")
    state.manifest = bundles.write_manifest(state.tmp, manifest)
    state.bundle = bundles.commit(state.layout, phase.id, state.tmp, publish=state.opts.mode == "run")
    return state


def render_report(state: RunState) -> RunState:
    phase = state.lp.phase
    state.out(f"phase {phase.id} ({phase.slug}) {state.opts.mode}: {state.verdict}")
    for c in state.checks:
        flag = "" if c.critical else " (non-critical)"
        state.out(f"  {c.verdict.value:<12} {c.id} [{c.kind}]{flag}: {c.reason}")
    for name, where in state.artifacts.items():
        state.out(f"  artifact {name}: {where or 'MISSING'}")
    for reason in state.reasons:
        state.out(f"  - {reason}")
    if state.forced_reasons:
        state.out("  OVERRIDDEN with --force: " + "; ".join(state.forced_reasons))
    state.out(f"  bundle: {_display(state.bundle, state.opts.repo_root)}")
    if state.opts.mode == "run" and state.bundle is not None:
        state.out(f"  latest: {_display(state.layout.latest(phase.id), state.opts.repo_root)}")
    return state


def exit_code(state: RunState) -> int:
    return VERDICT_EXIT[state.verdict]


def _display(path: Path | None, root: Path) -> str:
    if path is None:
        return "none"
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


PREPARE: list[Step] = [load, resolve_phase, check_dependencies, dry_run]
UNDER_LOCK: list[Step] = [run_steps, judge_gate, write_bundle]
FINISH: list[Step] = [render_report, exit_code]


def _chain(steps: Sequence[Step], state: RunState) -> RunState | int:
    for step in steps:
        result = step(state)
        if isinstance(result, int):
            return result
        state = result
    return state


def execute(opts: RunOptions, out: Printer = print) -> tuple[int, RunState]:
    """Run the whole workflow; returns the exit code and the final state."""
    state = RunState(opts=opts, out=out)
    prepared = _chain(PREPARE, state)
    if isinstance(prepared, int):
        return prepared, state
    layout = state.layout
    with bundles.phase_lock(layout, opts.phase_id), bundles.building(layout, opts.phase_id) as tmp:
        state.tmp = tmp
        state.started_at = bundles.utc_now()
        done = _chain(UNDER_LOCK, state)
        if isinstance(done, int):  # pragma: no cover - the locked steps never stop early
            return done, state
    finished = _chain(FINISH, state)
    assert isinstance(finished, int)
    return finished, state
