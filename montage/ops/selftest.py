"""``phase.selftest N|all``: prove that each gate check can fail, then that it passes unchanged.

For every check of a phase's gate, each negative control its kind declares
(``CONTROLS`` in the kind's module; :class:`montage.ops.checks.base.NegativeControl`) is applied to
a throwaway worktree of HEAD (:func:`montage.core.git.temporary_worktree`) and the check is run
there exactly as the gate runs it (same parameters: a control changes the product, never the
check). The control must give one of the verdicts it expects (FAIL, or INCONCLUSIVE where the kind
says that is the honest answer). A control run may stop at its first failing test
(``CheckContext.fail_fast``): that failure already decides FAIL, and a run without a failure is the
whole run, so stopping early can never turn a PASS into a FAIL. The check then runs once more on an
unchanged worktree of HEAD, unless the phase's PASS run bundle is current (same definition, same
inputs fingerprint, not forced, not dirty, verifying): its results *are* that unchanged run, so
they are copied with their evidence into the selftest bundle (the outcome names the bundle) and
re-judged from there like every other run.

Both results go into a *selftest bundle*: the same typed manifest (mode ``selftest``), phase.json,
the evidence of every run and the sha256 of every file, at
``proofs/phase-NN/selftest/<stamp>-<id>/``. :func:`verify` re-hashes it and re-judges every run
from its evidence with the check's own ``rejudge``, then re-derives the selftest verdict:

* PASS: every check has at least one control and every control failed as expected;
* FAIL: some control did not make its check fail: that check is *unable to fail*;
* PARTIAL: some check was not self-tested (no applicable control, or ``--fast`` left it out).

Then the phase's rollback plan is rehearsed in a throwaway worktree (:mod:`montage.ops.rehearsal`):
a step that does not act (it fails, or changes nothing it claims to change) makes the self-test
FAIL; a step that refuses naming why (a ``revert`` with no change of the phase's own) is recorded
and shown, and does not change the verdict.

A result is cached by the phase definition's hash and the inputs' fingerprint (and the scope:
fast or all): ``selftest`` reuses a current bundle and ``status`` shows it as stale once either
changes, like any bundle. Steps are not run: a check that judges a step's output sees the
committed files only. ``--fast`` runs the controls cheap enough for every CI run (scans, pytest,
command, file, log); the full run (perf guard, coverage, migrations, canary) is a long job to run
before committing bundles.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from montage.core import git as core_git
from montage.core.files import canonical_json
from montage.ops import bundle as bundles
from montage.ops import fingerprint
from montage.ops.checks import load_kind
from montage.ops.checks.base import ControlNotApplicable, NegativeControl, control_file
from montage.ops.gate import EVIDENCE_ROOT, run_check
from montage.ops.loader import LoadedPhase
from montage.ops.manifest import CheckResult, GitState, Host, Inputs, Manifest, Tools
from montage.ops.model import ControlSpec, GateCheck
from montage.ops.rehearsal import ACTED, FAILED, REFUSED, Rehearsal, rehearse
from montage.ops.verdict import Verdict

SELFTEST_DIR = "selftest"
RECORD = "selftest.json"
REHEARSAL_DIR = "rollback"  # the rehearsal's step logs, in the bundle
Printer = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """One control (or the unchanged run) of one check."""

    check: str
    kind: str
    control: str  # a control's name, or "unchanged"
    description: str
    change: str  # what the control edited ("" for the unchanged run); why it was not run otherwise
    expect: list[str]
    result_id: str | None  # the CheckResult in the manifest (None: not run)
    fast: bool
    verdict: str | None
    ok: bool | None  # control: failed as expected; unchanged: None


def controls_of(kind: str) -> tuple[NegativeControl, ...]:
    return tuple(getattr(load_kind(kind), "CONTROLS", ()))


def controls_for(check: GateCheck) -> tuple[NegativeControl, ...]:
    """The kind's default controls, then the gate entry's own (``controls:`` in the phase file); an own
    control with a default's name replaces that default."""
    own = {spec.name: _spec_control(spec) for spec in check.controls}
    defaults = tuple(c for c in controls_of(check.check) if c.name not in own)
    return defaults + tuple(own.values())


def _spec_control(spec: ControlSpec) -> NegativeControl:
    def apply(tree: Path, params: Any) -> str:
        done = []
        for rel, text in spec.write.items():
            control_file(tree, rel, text)
            done.append(f"{rel}: written")
        for rel, text in spec.append.items():
            target = tree / rel
            if not target.is_file():
                raise ControlNotApplicable(f"control {spec.name} appends to {rel}, which is not a file in the tree")
            target.write_text(target.read_text(encoding="utf-8") + text, encoding="utf-8")
            done.append(f"{rel}: appended to")
        return "; ".join(done)

    expect = tuple(Verdict(v) for v in spec.expect)
    return NegativeControl(spec.name, spec.description, apply, expect=expect, fast=spec.fast)


@dataclass(frozen=True)
class RunBundle:
    """The phase's current PASS run bundle, whose check results are the unchanged runs."""

    path: Path
    manifest: Manifest

    def result(self, check_id: str) -> CheckResult | None:
        return next((r for r in self.manifest.checks if r.id == check_id and r.measured), None)


def reusable_run(lp: LoadedPhase, layout: bundles.ProofsLayout, repo: Path) -> RunBundle | None:
    """The phase's latest run bundle when it is PASS, unforced, clean, current and verifies; else None."""
    from montage.ops.status import verify_bundle  # status imports this module

    bundle = layout.latest(lp.phase.id)
    manifest = bundles.read_manifest(bundle) if bundle.is_dir() else None
    if manifest is None or manifest.mode != "run" or manifest.verdict is not Verdict.PASS:
        return None
    if manifest.forced or manifest.git.dirty is not False or stale_reasons(lp, bundle, repo):
        return None
    if verify_bundle(bundle, lp.phase.id, "run"):
        return None
    return RunBundle(bundle, manifest)


def _reuse(run: RunBundle, check: GateCheck, result_id: str, tmp: Path) -> CheckResult | None:
    """Copy the run bundle's result of ``check`` (and its evidence) into the selftest bundle as ``result_id``."""
    found = run.result(check.id)
    if found is None:
        return None
    rel_dir = f"{EVIDENCE_ROOT}/{result_id}"
    shutil.copytree(run.path / found.evidence_dir, tmp / rel_dir)
    return found.model_copy(update={"id": result_id, "evidence_dir": rel_dir})


def _run_in_worktree(
    repo: Path, check: GateCheck, result_id: str, phase_id: int, tmp: Path, apply: Callable[[Path], str] | None
) -> tuple[CheckResult, str]:
    with core_git.temporary_worktree(repo, "HEAD", prefix="montage-selftest-") as worktree:
        change = apply(worktree.path) if apply is not None else ""
        copy = check.model_copy(update={"id": result_id})
        return run_check(copy, phase_id, worktree.path, tmp, {}, fail_fast=apply is not None), change


def _bound(apply: Callable[[Path, Any], str], params: Any) -> Callable[[Path], str]:
    def edit(tree: Path) -> str:
        return apply(tree, params)

    return edit


def _selftest_check(
    repo: Path, check: GateCheck, phase_id: int, tmp: Path, fast: bool, out: Printer, run: RunBundle | None = None
) -> tuple[list[Outcome], list[CheckResult]]:
    kind = load_kind(check.check)
    params = kind.Params.model_validate(check.with_)
    outcomes: list[Outcome] = []
    results: list[CheckResult] = []
    for control in controls_for(check):
        base = Outcome(check.id, check.check, control.name, control.description, "", [v.value for v in control.expect],
                       None, control.fast, None, None)  # fmt: skip
        if control.built_in:
            outcomes.append(dataclasses.replace(base, change="run by the kind on every run (its evidence shows it)"))
            continue
        if control.apply is None or (fast and not control.fast):
            outcomes.append(dataclasses.replace(base, change="not run (--fast)"))
            continue
        result_id = f"{check.id}.control-{control.name}"
        edit = _bound(control.apply, params)
        try:
            result, change = _run_in_worktree(repo, check, result_id, phase_id, tmp, edit)
        except ControlNotApplicable as exc:
            outcomes.append(dataclasses.replace(base, change=f"not applicable: {exc}"))
            continue
        results.append(result)
        ok = result.verdict.value in base.expect
        out(f"  {check.id} [{check.check}] control {control.name}: {result.verdict.value} "
            f"({'fails as it must' if ok else 'UNABLE TO FAIL'}) - {change}")  # fmt: skip
        outcomes.append(
            dataclasses.replace(base, change=change, result_id=result_id, verdict=result.verdict.value, ok=ok)
        )
    result_id = f"{check.id}.unchanged"
    reused = _reuse(run, check, result_id, tmp) if run is not None else None
    if reused is not None and run is not None:
        result, where = reused, f"reused from the current PASS run bundle ({run.manifest.finished_at})"
    else:
        result, where = _run_in_worktree(repo, check, result_id, phase_id, tmp, None)[0], ""
    results.append(result)
    out(f"  {check.id} [{check.check}] unchanged tree: {result.verdict.value}"
        f"{' (' + where + ')' if where else ''} - {result.reason[:160]}")  # fmt: skip
    outcomes.append(Outcome(check.id, check.check, "unchanged", "the unchanged tree (HEAD)", where, [],
                            result_id, True, result.verdict.value, None))  # fmt: skip
    return outcomes, results


def decide(
    outcomes: list[Outcome], gate_ids: list[str], rollback: list[Rehearsal] | None = None
) -> tuple[Verdict, list[str]]:
    """The selftest verdict and its reasons (see the module docstring); a pure function of the outcomes
    and of the rollback rehearsal (None: a bundle from before rehearsals, judged without them)."""
    reasons: list[str] = []
    failed = False
    if rollback is not None:
        failed = any(r.result == FAILED for r in rollback)
        reasons += [f"rollback step {r.step} does not act: {r.observed}" for r in rollback if r.result == FAILED]
    for check_id in gate_ids:
        mine = [o for o in outcomes if o.check == check_id and o.control != "unchanged"]
        for o in mine:
            if o.ok is False:
                failed = True
                reasons.append(f"{check_id} is unable to fail: control {o.control} ({o.change}) gave {o.verdict}")
        if not any(o.ok for o in mine) and not any(o.change.startswith("run by the kind") for o in mine):
            shown = "; ".join(f"{o.control}: {o.change}" for o in mine) or "its kind declares no control"
            reasons.append(f"{check_id} is not self-tested ({shown})")
    if failed:
        return Verdict.FAIL, reasons
    return (Verdict.PARTIAL if reasons else Verdict.PASS), reasons


def _manifest(lp: LoadedPhase, repo: Path, proofs: Path, started: str, results: list[CheckResult],
              verdict: Verdict, reasons: list[str]) -> Manifest:  # fmt: skip
    phase = lp.phase
    inputs = fingerprint.input_files(repo, phase.inputs)
    return Manifest(
        mode="selftest", phase_id=phase.id, phase_slug=phase.slug, phase_title=phase.title, phase_goal=phase.goal,
        phase_file=lp.path.name, definition_sha256=phase.definition_hash(), started_at=started,
        finished_at=bundles.utc_now(), git=GitState.model_validate(fingerprint.git_state(repo, proofs)),
        host=Host.model_validate(fingerprint.host_fingerprint()),
        tools=Tools.model_validate(fingerprint.tool_versions()),
        inputs=Inputs(globs=phase.inputs, fingerprint=fingerprint.combine(inputs), files=inputs),
        forced=False, forced_reasons=[], steps=[], step_failure=None, checks=results, artifacts={},
        verdict=verdict, reasons=reasons,
    )  # fmt: skip


def selftest_dir(layout: bundles.ProofsLayout, phase_id: int) -> Path:
    return layout.phase_dir(phase_id) / SELFTEST_DIR


def latest(layout: bundles.ProofsLayout, phase_id: int) -> Path | None:
    """The newest selftest bundle of the phase (names sort by time)."""
    found = sorted(p for p in selftest_dir(layout, phase_id).glob("*") if (p / bundles.MANIFEST).is_file())
    return found[-1] if found else None


def current(lp: LoadedPhase, layout: bundles.ProofsLayout, repo: Path, fast: bool) -> Path | None:
    """The newest selftest bundle still valid for the phase's definition, inputs and scope, if any."""
    bundle = latest(layout, lp.phase.id)
    if bundle is None or stale_reasons(lp, bundle, repo):
        return None
    record = json.loads((bundle / RECORD).read_text(encoding="utf-8"))
    return bundle if (record.get("scope") == "fast") == fast or record.get("scope") == "all" else None


def stale_reasons(lp: LoadedPhase, bundle: Path, repo: Path) -> list[str]:
    manifest = bundles.read_manifest(bundle)
    if manifest is None:
        return ["the selftest manifest is unreadable"]
    reasons = []
    if manifest.definition_sha256 != lp.phase.definition_hash():
        reasons.append(f"the phase definition {lp.path.name} changed since the self-test")
    if fingerprint.combine(fingerprint.input_files(repo, lp.phase.inputs)) != manifest.inputs.fingerprint:
        reasons.append("inputs changed since the self-test")
    return reasons


def selftest_phase(
    lp: LoadedPhase, repo: Path, layout: bundles.ProofsLayout, *, fast: bool = False, cache: bool = True,
    out: Printer = print,
) -> tuple[Manifest, Path]:  # fmt: skip
    """Self-test one phase's gate (or reuse a current result) and return its manifest and bundle."""
    phase = lp.phase
    if cache and (found := current(lp, layout, repo, fast)) is not None:
        manifest = bundles.load_manifest(found)
        out(f"phase {phase.id} ({phase.slug}) selftest: {manifest.verdict.value} (cached {manifest.finished_at})")
        return manifest, found
    out(f"phase {phase.id} ({phase.slug}) selftest{' (fast controls)' if fast else ''}:")
    with bundles.phase_lock(layout, phase.id), bundles.building(layout, phase.id) as tmp:
        started = bundles.utc_now()
        outcomes: list[Outcome] = []
        results: list[CheckResult] = []
        run = reusable_run(lp, layout, repo)
        if run is not None:
            out(f"  the unchanged runs are the current PASS run bundle's ({run.manifest.finished_at})")
        for check in phase.gate:
            o, r = _selftest_check(repo, check, phase.id, tmp, fast, out, run)
            outcomes += o
            results += r
        rehearsals = rehearse(phase, repo, tmp / REHEARSAL_DIR, out, proofs=layout.root)
        verdict, reasons = decide(outcomes, [c.id for c in phase.gate], rehearsals)
        record = {"scope": "fast" if fast else "all", "outcomes": [asdict(o) for o in outcomes],
                  "rollback": [asdict(r) for r in rehearsals]}  # fmt: skip
        (tmp / RECORD).write_text(canonical_json(record, indent=2) + "\n", encoding="utf-8")
        (tmp / "phase.json").write_text(
            canonical_json(phase.model_dump(mode="json", by_alias=True), indent=2) + "\n", encoding="utf-8"
        )
        manifest = bundles.write_manifest(tmp, _manifest(lp, repo, layout.root, started, results, verdict, reasons))
        target = selftest_dir(layout, phase.id) / bundles.new_bundle_name()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(target)
    out(f"phase {phase.id} selftest: {verdict.value}")
    for reason in reasons:
        out(f"  - {reason}")
    return manifest, target


def verify(bundle: Path) -> list[str]:
    """Re-hash a selftest bundle and re-judge every run from its evidence; return the problems."""
    from montage.ops.model import Phase

    problems = bundles.integrity_problems(bundle)
    if problems:
        return problems
    manifest = bundles.load_manifest(bundle)
    if manifest.mode != "selftest":
        return [f"manifest.json records a phase.{manifest.mode} bundle, not a selftest"]
    phase = Phase.model_validate_json((bundle / "phase.json").read_text(encoding="utf-8"))
    if phase.definition_hash() != manifest.definition_sha256:
        return ["phase.json does not match the definition hash in manifest.json"]
    record: dict[str, Any] = json.loads((bundle / RECORD).read_text(encoding="utf-8"))
    by_id = {c.id: c for c in phase.gate}
    results = {r.id: r for r in manifest.checks}
    outcomes = []
    for raw in record["outcomes"]:
        o = Outcome(**raw)
        if o.result_id is not None:
            result = results.get(o.result_id)
            spec = by_id.get(o.check)
            if result is None or spec is None:
                problems.append(f"{o.result_id}: recorded in {RECORD} but not in manifest.json / phase.json")
                continue
            if result.measured:
                kind = load_kind(spec.check)
                again = kind.rejudge(kind.Params.model_validate(spec.with_), bundle / result.evidence_dir)
                if again != result.judgement():
                    problems.append(f"{o.result_id}: re-judged {again.verdict.value}, recorded {result.verdict.value}")
            if o.verdict != result.verdict.value or (o.ok is not None and o.ok != (o.verdict in o.expect)):
                problems.append(
                    f"{o.result_id}: {RECORD} says {o.verdict} (ok {o.ok}), the manifest {result.verdict.value}"
                )
        outcomes.append(o)
    rollback = [Rehearsal(**r) for r in record["rollback"]] if "rollback" in record else None
    for r in rollback or []:
        if not (bundle / r.log).is_file():
            problems.append(f"rollback step {r.step}: its log {r.log} is missing")
    verdict, reasons = decide(outcomes, [c.id for c in phase.gate], rollback)
    if (verdict, reasons) != (manifest.verdict, manifest.reasons):
        problems.append(f"re-deciding gives {verdict.value} but manifest.json says {manifest.verdict.value}")
    return problems


def summary(lp: LoadedPhase, layout: bundles.ProofsLayout, repo: Path) -> str:
    """One line for phase.status: self-tested (when, scope, verdict), stale, or not self-tested."""
    bundle = latest(layout, lp.phase.id)
    if bundle is None:
        return f"not self-tested: run `invoke phase.selftest {lp.phase.id}`"
    manifest = bundles.read_manifest(bundle)
    if manifest is None or verify(bundle):
        return f"self-test bundle {bundle.name} does not verify (tampered or unreadable)"
    scope = json.loads((bundle / RECORD).read_text(encoding="utf-8")).get("scope", "all")
    stale = stale_reasons(lp, bundle, repo)
    state = "STALE " if stale else ""
    unable = [r for r in manifest.reasons if "unable to fail" in r]
    line = f"self-test {state}{manifest.verdict.value} ({scope} controls, {manifest.finished_at})"
    line += f"; {len(unable)} check(s) unable to fail" if unable else ""
    rehearsed = json.loads((bundle / RECORD).read_text(encoding="utf-8")).get("rollback")
    if rehearsed is None:
        return line + "; rollback not rehearsed"
    counts = {k: sum(r["result"] == k for r in rehearsed) for k in (ACTED, REFUSED, FAILED)}
    shown = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no steps"
    return line + f"; rollback rehearsed: {shown}"
