"""Phase states and bundle verification.

State precedence: TAMPERED > STALE > OVERRIDDEN > the bundle's verdict (PASS / FAIL / PARTIAL)
> NOT RUN.  Only a current, untampered, unforced PASS satisfies ``depends_on``; when signatures are
required (:func:`montage.ops.signing.signatures_required`) it must also be SIGNED by a trusted key.
Every state comes with the signature's: SIGNED by whom, UNSIGNED, UNTRUSTED or FORGED (a FORGED
envelope makes the bundle TAMPERED).

Status and ``depends_on`` trust only what they re-judged: every file is re-hashed, and every check is
re-judged from the evidence stored in the bundle (:func:`verify_bundle`, the same judgement as
``phase.verify``).  Re-judging is cached under ``proofs/.cache/verify/`` (git-ignored), keyed by the
manifest's sha256 and a hash of the judging code, so ``phase.status`` stays fast; the re-hash is
never cached.  A manifest that is malformed, names another phase, or whose recorded verdict differs
from the re-judged one is TAMPERED.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from montage.core.files import atomic_write_text
from montage.ops import bundle as bundles
from montage.ops import fingerprint, signing
from montage.ops.checks import KINDS, load_kind
from montage.ops.gate import find_artifacts, judge
from montage.ops.loader import LoadedPhase, Roadmap
from montage.ops.manifest import CheckResult, Manifest
from montage.ops.model import Phase
from montage.ops.verdict import Verdict

CACHE_DIR = ".cache/verify"  # under the proofs directory


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
    signature: str | None = None  # SIGNED / UNSIGNED / UNTRUSTED / FORGED (None: no bundle, or unreadable)
    signed_by: str | None = None  # the trusted key's "name (id)" when SIGNED
    signature_reason: str | None = None
    selftest: str | None = None  # montage.ops.selftest.summary: self-tested when, or unable to fail

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def phase_status(
    lp: LoadedPhase, layout: bundles.ProofsLayout, repo_root: Path, trust: signing.Trust | None = None
) -> PhaseStatus:
    phase = lp.phase
    trust = signing.load_trust(layout.root) if trust is None else trust
    out = PhaseStatus(id=phase.id, slug=phase.slug, title=phase.title, state="NOT RUN")
    latest = layout.latest(phase.id)
    if not latest.exists() and not latest.is_symlink():
        out.reasons.append(f"no bundle yet: run `invoke phase.run {phase.id}`")
        return out
    out.bundle = _display(latest, repo_root)
    manifest = bundles.read_manifest(latest)
    if manifest is not None:
        out.verdict = manifest.verdict.value
        out.date = manifest.finished_at
        out.commit = manifest.git.commit
        out.dirty = manifest.git.dirty
        out.forced = manifest.forced
    if manifest is not None:
        sig = signing.check_signature(latest, manifest, trust)
        out.signature, out.signed_by, out.signature_reason = sig.state, sig.signer, sig.reason
    problems = verify_bundle(latest, phase_id=phase.id, mode="run", cache=layout.root / CACHE_DIR, trust=trust)
    if problems or manifest is None:
        out.state = "TAMPERED"
        out.reasons = problems
        return out
    stale: list[str] = []
    if manifest.definition_sha256 != phase.definition_hash():
        stale.append(f"the phase definition {lp.path.name} changed since the bundle was made")
    current = fingerprint.input_files(repo_root, phase.inputs)
    if fingerprint.combine(current) != manifest.inputs.fingerprint:
        changes = fingerprint.changed_inputs(manifest.inputs.files, current)
        shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
        stale.append(f"inputs changed: {shown}")
    if stale:
        out.state = "STALE"
        out.reasons = stale
    elif out.forced:
        out.state = "OVERRIDDEN"
        out.reasons = ["run with --force: " + "; ".join(manifest.forced_reasons)]
    else:
        out.state = manifest.verdict.value
        out.reasons = list(manifest.reasons)
    return out


def _with_selftest(st: PhaseStatus, lp: LoadedPhase, layout: bundles.ProofsLayout, repo_root: Path) -> PhaseStatus:
    from montage.ops.selftest import summary

    st.selftest = summary(lp, layout, repo_root)
    return st


def roadmap_status(roadmap: Roadmap, layout: bundles.ProofsLayout, repo_root: Path) -> list[PhaseStatus]:
    trust = signing.load_trust(layout.root)
    return [
        _with_selftest(phase_status(lp, layout, repo_root, trust), lp, layout, repo_root) for lp in roadmap.ordered()
    ]


def unsatisfied_dependencies(
    roadmap: Roadmap, phase: Phase, layout: bundles.ProofsLayout, repo_root: Path
) -> list[str]:
    """Why each dependency does not count as PASS (empty: all satisfied)."""
    out = []
    trust = signing.load_trust(layout.root)
    required = signing.signatures_required(trust)
    for dep in phase.deps:
        st = phase_status(roadmap.get(dep), layout, repo_root, trust)
        if st.state != Verdict.PASS:
            why = "; ".join(st.reasons[:2])
            out.append(f"phase {dep} ({st.slug}) is {st.state}" + (f": {why}" if why else ""))
        elif required and st.signature != "SIGNED":
            out.append(
                f"phase {dep} ({st.slug}) is PASS but {st.signature} ({st.signature_reason}); signatures are "
                f"required (a key is committed under {signing.keys_dir(layout.root)}, or {signing.ENV_REQUIRE}"
                f"=always), so only a bundle signed by a trusted key counts: re-sign it with "
                f"`invoke phase.resign {dep}`"
            )
    return out


def _display(path: Path, repo_root: Path) -> str:
    try:
        return path.relative_to(repo_root).as_posix()
    except ValueError:
        return str(path)


def phase_of_path(bundle: Path) -> int | None:
    """The phase a bundle's location says it belongs to (``phase-NN/latest`` or ``phase-NN/runs/X``)."""
    if bundle.name == "latest":
        home = bundle.parent
    elif bundle.parent.name == "runs":
        home = bundle.parent.parent
    else:
        return None
    match = re.fullmatch(r"phase-(\d{2})", home.name)
    return int(match.group(1)) if match else None


def verify_bundle(
    bundle: Path,
    phase_id: int | None = None,
    mode: str | None = None,
    cache: Path | None = None,
    trust: signing.Trust | None = None,
) -> list[str]:
    """Re-hash every file and re-judge every check from stored evidence; return the problems.

    ``phase_id``/``mode``: what the bundle must be (a bundle copied from another phase, or a
    ``phase.gate`` bundle in ``latest/``, is TAMPERED).  ``cache``: a directory where re-judgements
    are kept by manifest hash (status); without it everything is re-judged (``phase.verify``).
    ``trust``: the trusted keys; a FORGED envelope is then a problem (None: signatures are not looked at,
    as ``phase.resign`` re-judges before it replaces the envelope).
    """
    problems = bundles.integrity_problems(bundle)
    if problems:
        return problems
    manifest = bundles.load_manifest(bundle)  # integrity_problems has validated it
    if phase_id is not None and manifest.phase_id != phase_id:
        return [
            f"manifest.json is a bundle of phase {manifest.phase_id} ({manifest.phase_slug}), "
            f"not of phase {phase_id}: a bundle copied from another phase proves nothing here"
        ]
    if mode is not None and manifest.mode != mode:
        return [f"manifest.json records a phase.{manifest.mode} bundle where only phase.{mode} bundles belong"]
    problems = signature_problems(bundle, manifest, trust)
    if problems:
        return problems
    key = hashlib.sha256((bundle / bundles.MANIFEST).read_bytes()).hexdigest() + "-" + _judging_code()
    cached = _cache_read(cache, key)
    if cached is not None:
        return cached
    problems = rejudge_problems(bundle, manifest)
    _cache_write(cache, key, problems)
    return problems


def signature_problems(bundle: Path, manifest: Manifest, trust: signing.Trust | None) -> list[str]:
    """A FORGED envelope (malformed, signing another bundle, a trusted key's signature that does not
    verify) makes the bundle TAMPERED; UNSIGNED and UNTRUSTED are judged by ``depends_on``'s policy."""
    if trust is None:
        return []
    sig = signing.check_signature(bundle, manifest, trust)
    return [f"signature FORGED: {sig.reason}"] if sig.state == "FORGED" else []


def rejudge_problems(bundle: Path, manifest: Manifest) -> list[str]:
    """Re-judge a bundle whose files match its manifest: the recorded verdict must be the re-judged one."""
    try:
        phase = Phase.model_validate_json((bundle / "phase.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValidationError) as exc:
        return [f"phase.json is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0]})"]
    if phase.definition_hash() != manifest.definition_sha256:
        return ["phase.json does not match the definition hash in manifest.json"]
    if phase.id != manifest.phase_id:
        return [f"phase.json defines phase {phase.id} but manifest.json says phase {manifest.phase_id}"]
    problems = _step_problems(phase, manifest)
    wanted = [] if manifest.step_failure else [c.id for c in phase.gate]
    if [c.id for c in manifest.checks] != wanted:
        problems.append(
            f"manifest.json records checks {[c.id for c in manifest.checks]} but the gate in phase.json "
            f"judges {wanted}" + (" (none after a failed step)" if manifest.step_failure else "")
        )
    if problems:
        return problems
    by_id = {c.id: c for c in phase.gate}
    rejudged: list[CheckResult] = []
    for result in manifest.checks:
        spec = by_id[result.id]
        if spec.check not in KINDS or (spec.check, spec.critical) != (result.kind, result.critical):
            problems.append(
                f"check {result.id}: manifest.json records kind {result.kind} (critical {result.critical}) but "
                f"phase.json says {spec.check} (critical {spec.critical}), or the kind is unknown"
            )
            continue
        if not result.measured:  # the kind crashed or a tool was missing: nothing to re-judge (ERROR)
            rejudged.append(result)
            continue
        kind = load_kind(spec.check)
        try:
            again = kind.rejudge(kind.Params.model_validate(spec.with_), bundle / result.evidence_dir)
        except Exception as exc:  # bad parameters in phase.json, or a kind that cannot re-judge this evidence
            problems.append(f"check {result.id}: cannot be re-judged ({type(exc).__name__}: {exc})")
            continue
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
    artifacts = find_artifacts(rejudged, phase.bundle)
    if artifacts != manifest.artifacts:
        problems.append(
            "the bundle's artifacts differ from those recorded in manifest.json (an artifact counts only as "
            f"evidence of the check that produced it): re-judged {artifacts}, recorded {manifest.artifacts}"
        )
    gate = judge(rejudged, artifacts, manifest.step_failure)
    if gate != manifest.gate:
        problems.append(f"re-judging gives {gate.verdict.value} but manifest.json says {manifest.verdict.value}")
    return problems


def _step_problems(phase: Phase, manifest: Manifest) -> list[str]:
    """The step records must be what the runner writes: a prefix of phase.json's steps that stops at
    the first failure, and ``step_failure`` set exactly when a step failed."""
    if manifest.mode == "gate":
        ok = not manifest.steps and manifest.step_failure is None
        return [] if ok else ["a phase.gate bundle runs no steps, but manifest.json records some"]
    ids = [s.id for s in manifest.steps]
    failed = [i for i, s in enumerate(manifest.steps) if s.failed]
    expected_ids = [s.id for s in phase.steps]
    ok = ids == expected_ids[: len(ids)]
    if failed:
        ok = ok and failed == [len(ids) - 1] and manifest.step_failure is not None
    else:
        ok = ok and ids == expected_ids and manifest.step_failure is None
    if ok:
        return []
    return [
        f"manifest.json's step records {ids} (failed: {[ids[i] for i in failed]}, step_failure "
        f"{manifest.step_failure!r}) are not a run of phase.json's steps {expected_ids}"
    ]


@functools.cache
def _judging_code() -> str:
    """Hash of the toolkit's source: a cached re-judgement is valid only for the code that made it."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_read(cache: Path | None, key: str) -> list[str] | None:
    if cache is None:
        return None
    try:
        data = json.loads((cache / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    problems = data.get("problems") if isinstance(data, dict) else None
    if isinstance(problems, list) and all(isinstance(p, str) for p in problems):
        return problems
    return None


def _cache_write(cache: Path | None, key: str, problems: list[str]) -> None:
    if cache is None:
        return
    try:
        atomic_write_text(cache / f"{key}.json", json.dumps({"problems": problems}, indent=2) + "\n")
    except OSError:
        pass  # a read-only checkout: status still works, it just re-judges every time
