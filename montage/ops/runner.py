"""``phase.run`` and ``phase.gate`` as straight-line code (the shape of nox's workflow).

load roadmap -> resolve phase -> check dependencies -> (dry run) -> run steps -> judge gate ->
build manifest -> write bundle -> render report -> exit code.  Each step is a small function that
takes the previous step's value and returns the next one; :func:`check_dependencies` may instead
return an ``int``, the exit code that ends the run.  Nothing is shared but return values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from montage.core.files import canonical_json
from montage.core.proc import run_logged
from montage.errors import ConfigError, ExitCode, ToolMissing
from montage.ops import bundle as bundles
from montage.ops import fingerprint, signing
from montage.ops.gate import find_artifacts, judge, run_checks
from montage.ops.loader import LoadedPhase, Roadmap, load_roadmap
from montage.ops.manifest import CheckResult, GateVerdict, GitState, Host, Inputs, Manifest, StepRecord, Tools
from montage.ops.model import Phase
from montage.ops.report import summary_markdown
from montage.ops.status import unsatisfied_dependencies
from montage.ops.verdict import Verdict

VERDICT_EXIT = {Verdict.PASS: ExitCode.OK, Verdict.FAIL: ExitCode.FAIL, Verdict.PARTIAL: ExitCode.PARTIAL}
Printer = Callable[[str], None]
Mode = Literal["run", "gate"]


@dataclass(frozen=True)
class RunOptions:
    repo_root: Path
    phases_dir: Path
    proofs_dir: Path
    phase_id: int
    mode: Mode = "run"
    force: bool = False
    dry_run: bool = False

    @property
    def layout(self) -> bundles.ProofsLayout:
        return bundles.ProofsLayout(self.proofs_dir)


@dataclass(frozen=True)
class StepsRun:
    """What :func:`run_steps` did: the step records and why the run stopped early (None: it did not)."""

    records: list[StepRecord] = field(default_factory=list)
    failure: str | None = None


@dataclass(frozen=True)
class Judged:
    checks: list[CheckResult]
    artifacts: dict[str, str | None]
    gate: GateVerdict


@dataclass(frozen=True)
class Published:
    """The bundle written and where it now is (under runs/; a run also copies it to latest/)."""

    manifest: Manifest
    bundle: Path


def load(opts: RunOptions) -> Roadmap:
    return load_roadmap(opts.phases_dir)


def resolve_phase(roadmap: Roadmap, opts: RunOptions) -> LoadedPhase:
    return roadmap.get(opts.phase_id)


def check_dependencies(roadmap: Roadmap, lp: LoadedPhase, opts: RunOptions, out: Printer) -> list[str] | int:
    """The unsatisfied dependencies run past with --force (empty: none), or exit 6 (refused)."""
    if opts.mode == "gate":
        return []
    missing = unsatisfied_dependencies(roadmap, lp.phase, opts.layout, opts.repo_root)
    if missing and not opts.force:
        out(
            f"phase.run {lp.phase.id} refused: every phase in depends_on needs a current PASS bundle. "
            + "; ".join(missing)
            + f". Inspect with `invoke phase.gate {lp.phase.id}`, or override with --force "
            "(recorded in the bundle and shown in every status)."
        )
        return ExitCode.REFUSED
    return missing


def dry_run(phase: Phase, opts: RunOptions, forced_reasons: list[str], out: Printer) -> int:
    out(f"phase {phase.id} ({phase.slug}) would {opts.mode}:")
    if opts.mode == "run":
        for step in phase.steps:
            out(f"  step {step.id}: {' '.join(step.argv())} (timeout {step.timeout_s:g}s)")
    for check in phase.gate:
        out(f"  check {check.id}: {check.check} {canonical_json(check.with_)}")
    out(f"  bundle artifacts: {', '.join(phase.bundle) or 'none'}")
    if forced_reasons:
        out("  forced past: " + "; ".join(forced_reasons))
    return ExitCode.OK


def run_steps(phase: Phase, opts: RunOptions, tmp: Path, out: Printer) -> StepsRun:
    """Run the phase's steps in order (none in gate mode), stopping at the first failure."""
    if opts.mode == "gate":
        return StepsRun()
    records: list[StepRecord] = []
    for step in phase.steps:
        rel = f"steps/{step.id}.log"
        out(f"step {step.id}: {' '.join(step.argv())}")
        try:
            done = run_logged(step.argv(), tmp / rel, opts.repo_root, step.timeout_s)
        except ToolMissing as exc:
            (tmp / rel).write_text(str(exc) + "\n", encoding="utf-8")
            records.append(
                StepRecord(id=step.id, argv=step.argv(), exit_code=None, duration_s=0.0, timed_out=False, log=rel)
            )
            return StepsRun(records, f"step {step.id} could not start: {exc}")
        records.append(
            StepRecord(
                id=step.id,
                argv=done.argv,
                exit_code=done.returncode,
                duration_s=round(done.duration_s, 3),
                timed_out=done.timed_out,
                log=rel,
            )
        )
        if done.returncode != 0:
            how = f"timed out after {step.timeout_s:g}s" if done.timed_out else f"exit code {done.returncode}"
            last = done.tail(1).strip()
            return StepsRun(records, f"step {step.id} failed ({how})" + (f": {last[:200]}" if last else ""))
    return StepsRun(records)


def judge_gate(phase: Phase, opts: RunOptions, tmp: Path, steps: StepsRun) -> Judged:
    """Run the gate's checks (none after a failed step) and decide."""
    checks = [] if steps.failure is not None else run_checks(phase, opts.repo_root, tmp)
    artifacts = find_artifacts(checks, phase.bundle)
    return Judged(checks, artifacts, judge(checks, artifacts, steps.failure))


def build_manifest(
    lp: LoadedPhase, opts: RunOptions, started_at: str, forced_reasons: list[str], steps: StepsRun, judged: Judged
) -> Manifest:
    phase = lp.phase
    inputs = fingerprint.input_files(opts.repo_root, phase.inputs)
    return Manifest(
        mode=opts.mode,
        phase_id=phase.id,
        phase_slug=phase.slug,
        phase_title=phase.title,
        phase_goal=phase.goal,
        phase_file=lp.path.name,
        definition_sha256=phase.definition_hash(),
        started_at=started_at,
        finished_at=bundles.utc_now(),
        git=GitState.model_validate(fingerprint.git_state(opts.repo_root, opts.proofs_dir)),
        host=Host.model_validate(fingerprint.host_fingerprint()),
        tools=Tools.model_validate(fingerprint.tool_versions()),
        inputs=Inputs(globs=phase.inputs, fingerprint=fingerprint.combine(inputs), files=inputs),
        forced=bool(forced_reasons),
        forced_reasons=forced_reasons,
        steps=steps.records,
        step_failure=steps.failure,
        checks=judged.checks,
        artifacts=judged.artifacts,
        verdict=judged.gate.verdict,
        reasons=judged.gate.reasons,
    )


def write_bundle(
    phase: Phase, opts: RunOptions, tmp: Path, manifest: Manifest, signer: signing.BundleSigner | None = None
) -> Published:
    """phase.json, summary.md, the manifest, its signed envelope (with a key); then the bundle moves into
    runs/ (and latest/ for a run), so the envelope is published with the bundle or not at all."""
    (tmp / "phase.json").write_text(
        canonical_json(phase.model_dump(mode="json", by_alias=True), indent=2) + "\n", encoding="utf-8"
    )
    (tmp / "summary.md").write_text(summary_markdown(manifest), encoding="utf-8")
    manifest = bundles.write_manifest(tmp, manifest)
    if signer is not None:
        signing.sign_bundle(tmp, manifest, signer)
    bundle = bundles.commit(opts.layout, phase.id, tmp, publish=opts.mode == "run")
    return Published(manifest, bundle)


def render_report(result: Published, opts: RunOptions, out: Printer) -> Manifest:
    m = result.manifest
    out(f"phase {m.phase_id} ({m.phase_slug}) {m.mode}: {m.verdict.value}")
    for c in m.checks:
        flag = "" if c.critical else " (non-critical)"
        out(f"  {c.verdict.value:<12} {c.id} [{c.kind}]{flag}: {c.reason}")
    for name, where in m.artifacts.items():
        out(f"  artifact {name}: {where or 'MISSING'}")
    for reason in m.reasons:
        out(f"  - {reason}")
    if m.forced_reasons:
        out("  OVERRIDDEN with --force: " + "; ".join(m.forced_reasons))
    out(f"  bundle: {_display(result.bundle, opts.repo_root)}")
    out(f"  signature: {_signature_line(result.bundle, m, opts)}")
    if m.mode == "run":
        out(f"  latest: {_display(opts.layout.latest(m.phase_id), opts.repo_root)}")
    return m


def _signature_line(bundle: Path, manifest: Manifest, opts: RunOptions) -> str:
    try:
        check = signing.check_signature(bundle, manifest, signing.load_trust(opts.proofs_dir))
    except ConfigError as exc:  # a malformed file under proofs/keys/: the bundle is written, say why unchecked
        return f"not checked ({exc.message})"
    if check.state == "UNSIGNED":
        return f"UNSIGNED (no signing key at {signing.key_path()[0]}; create one with `invoke keys.new`)"
    return check.label if check.state == "SIGNED" else f"{check.state}: {check.reason}"


def exit_code(manifest: Manifest) -> int:
    return VERDICT_EXIT[manifest.verdict]


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def execute(opts: RunOptions, out: Printer = print) -> tuple[int, Published | None]:
    """Run the whole workflow; returns the exit code and the bundle built (None: it stopped before)."""
    roadmap = load(opts)
    lp = resolve_phase(roadmap, opts)
    forced = check_dependencies(roadmap, lp, opts, out)
    if isinstance(forced, int):
        return forced, None
    if opts.dry_run:
        return dry_run(lp.phase, opts, forced, out), None
    signer = signing.configured_signer()  # before any step: a broken key must not cost a whole run
    with bundles.phase_lock(opts.layout, opts.phase_id), bundles.building(opts.layout, opts.phase_id) as tmp:
        started_at = bundles.utc_now()
        steps = run_steps(lp.phase, opts, tmp, out)
        judged = judge_gate(lp.phase, opts, tmp, steps)
        manifest = build_manifest(lp, opts, started_at, forced, steps, judged)
        result = write_bundle(lp.phase, opts, tmp, manifest, signer)
    code = exit_code(render_report(result, opts, out))
    if opts.mode == "run":  # a history line and the HTML/Markdown reports (montage.ops.report_pages)
        from montage.ops.report_pages import after_run

        after_run(
            opts.repo_root,
            opts.phases_dir,
            opts.proofs_dir,
            result.manifest,
            _display(result.bundle, opts.repo_root),
            out,
        )
    return code, result
