"""Phase states and bundle verification.

State precedence: TAMPERED > STALE > OVERRIDDEN > the bundle's verdict (PASS / FAIL / PARTIAL)
> NOT RUN.  Only a current, untampered, unforced PASS satisfies ``depends_on``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from montage.ops import bundle as bundles
from montage.ops import fingerprint
from montage.ops.checks import KINDS, load_kind
from montage.ops.checks.base import CheckResult
from montage.ops.gate import find_artifacts, judge
from montage.ops.loader import LoadedPhase, Roadmap
from montage.ops.model import Phase


@dataclass
class PhaseStatus:
    id: int
    slug: str
    title: str
    state: str
    verdict: str | None = None
    date: str | None = None
    commit: str | None = None
    dirty: bool | None = None
    bundle: str | None = None
    forced: bool = False
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def phase_status(lp: LoadedPhase, layout: bundles.ProofsLayout, repo_root: Path) -> PhaseStatus:
    phase = lp.phase
    out = PhaseStatus(id=phase.id, slug=phase.slug, title=phase.title, state="NOT RUN")
    latest = layout.latest(phase.id)
    if not latest.exists():
        out.reasons.append(f"no bundle yet: run `invoke phase.run {phase.id}`")
        return out
    out.bundle = _display(latest, repo_root)
    problems = bundles.integrity_problems(latest)
    manifest = bundles.read_manifest(latest)
    if manifest is not None:
        out.verdict = manifest.get("verdict")
        out.date = manifest.get("finished_at")
        out.commit = (manifest.get("git") or {}).get("commit")
        out.dirty = (manifest.get("git") or {}).get("dirty")
        out.forced = bool(manifest.get("forced"))
    if problems:
        out.state = "TAMPERED"
        out.reasons = problems
        return out
    assert manifest is not None
    stale: list[str] = []
    if manifest.get("definition_sha256") != phase.definition_hash():
        stale.append(f"the phase definition {lp.path.name} changed since the bundle was made")
    recorded = manifest.get("inputs", {}).get("files", {})
    current = fingerprint.input_files(repo_root, phase.inputs)
    if fingerprint.combine(current) != manifest.get("inputs", {}).get("fingerprint"):
        changes = fingerprint.changed_inputs(recorded, current)
        shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
        stale.append(f"inputs changed: {shown}")
    if stale:
        out.state = "STALE"
        out.reasons = stale
    elif out.forced:
        out.state = "OVERRIDDEN"
        out.reasons = ["run with --force: " + "; ".join(manifest.get("forced_reasons", []))]
    else:
        out.state = str(manifest.get("verdict"))
        out.reasons = list(manifest.get("reasons", []))
    return out


def roadmap_status(roadmap: Roadmap, layout: bundles.ProofsLayout, repo_root: Path) -> list[PhaseStatus]:
    return [phase_status(lp, layout, repo_root) for lp in roadmap.ordered()]


def unsatisfied_dependencies(
    roadmap: Roadmap, phase: Phase, layout: bundles.ProofsLayout, repo_root: Path
) -> list[str]:
    """Why each dependency does not count as PASS (empty: all satisfied)."""
    out = []
    for dep in phase.deps:
        st = phase_status(roadmap.get(dep), layout, repo_root)
        if st.state != "PASS":
            why = "; ".join(st.reasons[:2])
            out.append(f"phase {dep} ({st.slug}) is {st.state}" + (f": {why}" if why else ""))
    return out


def _display(path: Path, repo_root: Path) -> str:
    try:
        return path.relative_to(repo_root).as_posix()
    except ValueError:
        return str(path)


def verify_bundle(bundle: Path) -> list[str]:
    """Re-hash every file and re-judge every check from stored evidence; return the problems."""
    problems = bundles.integrity_problems(bundle)
    if problems:
        return problems
    manifest = bundles.read_manifest(bundle)
    assert manifest is not None
    try:
        phase = Phase.model_validate_json((bundle / "phase.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"phase.json is unreadable ({exc})"]
    if phase.definition_hash() != manifest.get("definition_sha256"):
        return ["phase.json does not match the definition hash in manifest.json"]
    stored = [CheckResult.model_validate(c) for c in manifest.get("checks", [])]
    by_id = {c.id: c for c in phase.gate}
    rejudged: list[CheckResult] = []
    for result in stored:
        spec = by_id.get(result.id)
        if spec is None or spec.check not in KINDS:
            problems.append(f"check {result.id} is not in phase.json or its kind is unknown")
            continue
        if not result.measured:  # the kind crashed or a tool was missing: nothing to re-judge
            rejudged.append(result)
            continue
        kind = load_kind(spec.check)
        again = kind.rejudge(kind.Params.model_validate(spec.with_), bundle / result.evidence_dir)
        if again != result.judgement():
            problems.append(
                f"check {result.id}: re-judging {result.evidence_dir} gives {again.verdict.value} "
                f"({again.reason}) but the manifest says {result.verdict.value} ({result.reason})"
            )
        rejudged.append(
            CheckResult.from_judgement(result.id, result.kind, result.critical, again, result.evidence_dir, 0.0)
        )
    if problems:
        return problems
    artifacts = find_artifacts(bundle, phase.bundle)
    if artifacts != manifest.get("artifacts"):
        problems.append("the bundle's artifacts differ from those recorded in manifest.json")
    verdict, reasons = judge(rejudged, artifacts, manifest.get("step_failure"))
    if verdict != manifest.get("verdict") or reasons != manifest.get("reasons"):
        problems.append(f"re-judging gives {verdict} but manifest.json says {manifest.get('verdict')}")
    return problems
