"""Judge a gate: run each check kind into the bundle's evidence directory, then decide.

Gate verdicts: FAIL if any critical check is FAIL or ERROR (or a step failed); PASS only if every
check is PASS and every ``bundle`` artifact was produced by a measured check (it is one of the
evidence files that check names, so re-judging the check validates it: a file merely present in
the bundle does not count); otherwise PARTIAL, with the reasons.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

from montage.errors import MontageError
from montage.ops.checks import load_kind
from montage.ops.checks.base import CheckContext, Judgement, Verdict
from montage.ops.manifest import CheckResult, GateVerdict
from montage.ops.model import GateCheck, Phase

EVIDENCE_ROOT = "evidence"


def run_check(
    check: GateCheck,
    phase_id: int,
    repo_root: Path,
    bundle_dir: Path,
    shared: dict[str, Any],
    *,
    fail_fast: bool = False,
) -> CheckResult:
    """Run one check; a crash or a missing tool becomes an ERROR result with its evidence kept.

    ``fail_fast``: a negative control's run (montage.ops.selftest), which may stop at its first failure.
    """
    rel_dir = f"{EVIDENCE_ROOT}/{check.id}"
    evidence_dir = bundle_dir / rel_dir
    evidence_dir.mkdir(parents=True, exist_ok=True)
    kind = load_kind(check.check)
    params = kind.Params.model_validate(check.with_)
    ctx = CheckContext(
        repo_root=repo_root,
        bundle_dir=bundle_dir,
        evidence_dir=evidence_dir,
        phase_id=phase_id,
        check_id=check.id,
        shared=shared,
        fail_fast=fail_fast,
    )
    started = time.monotonic()
    measured = False
    try:
        judgement = kind.run(params, ctx)
        measured = True
    except MontageError as exc:
        judgement = Judgement(verdict=Verdict.ERROR, expected="a measurement", reason=str(exc))
    except Exception as exc:  # a bug in a kind must still leave a judged, explained result
        (evidence_dir / "exception.txt").write_text(traceback.format_exc(), encoding="utf-8")
        judgement = Judgement(
            verdict=Verdict.ERROR,
            expected="a measurement",
            reason=f"the {check.check} check crashed: {type(exc).__name__}: {exc}",
            evidence=["exception.txt"],
        )
    return CheckResult.from_judgement(
        check.id, check.check, check.critical, judgement, rel_dir, time.monotonic() - started, measured
    )


def run_checks(phase: Phase, repo_root: Path, bundle_dir: Path) -> list[CheckResult]:
    shared: dict[str, Any] = {}
    return [run_check(check, phase.id, repo_root, bundle_dir, shared) for check in phase.gate]


def find_artifacts(checks: list[CheckResult], names: list[str]) -> dict[str, str | None]:
    """Where each required artifact is: the first evidence file of a measured check with that name."""
    produced = [path for c in checks if c.measured for path in sorted(c.produced())]
    return {name: next((p for p in produced if p.rsplit("/", 1)[-1] == name), None) for name in names}


def judge(checks: list[CheckResult], artifacts: dict[str, str | None], step_failure: str | None = None) -> GateVerdict:
    """The gate verdict (PASS / FAIL / PARTIAL) and the reasons it is not PASS."""
    reasons: list[str] = []
    failed = False
    if step_failure:
        failed = True
        reasons.append(step_failure)
    for c in checks:
        if c.verdict is Verdict.PASS:
            continue
        critical = c.critical and c.verdict in (Verdict.FAIL, Verdict.ERROR)
        failed = failed or critical
        label = "critical" if c.critical else "non-critical"
        reasons.append(f"{c.id} ({c.kind}, {label}) {c.verdict.value}: {c.reason}")
    if not checks and not step_failure:
        reasons.append("the gate has no checks yet: nothing was measured, so it cannot PASS")
    for name, where in artifacts.items():
        if where is None:
            reasons.append(f"artifact {name} is missing: no check in this gate produces it yet")
    if failed:
        return GateVerdict(verdict=Verdict.FAIL, reasons=reasons)
    return GateVerdict(verdict=Verdict.PARTIAL if reasons else Verdict.PASS, reasons=reasons)
