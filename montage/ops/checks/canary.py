"""``canary``: serve the baseline and the candidate side by side, send both the same synthetic
traffic, and judge the candidate against the SLO matrix (ROADMAP.md "Phase 2 in detail").

Source ``local`` (the only one implemented): baseline = ``baseline_ref`` (default ``HEAD``, the last
commit, so the canary measures the uncommitted change; use e.g. ``HEAD~1`` to measure the last
commit) checked out in a temporary git worktree, candidate = the working tree; see
:mod:`montage.ops.canary.collect`.  Evidence: ``canary_metrics.json`` (raw per-request samples and
per-side ``/metrics`` scrapes) and ``evaluate_canary.out`` (first line PASS / PARTIAL / FAIL, then
one line per SLO).  The judgement is recomputed from ``canary_metrics.json`` alone (seeded), so
``phase verify`` reproduces it bit for bit.  Gate verdict: PASS -> PASS, FAIL -> FAIL, PARTIAL ->
INCONCLUSIVE (never PASS).  The load is synthetic, generated on loopback, not production traffic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from montage.ops.checks.base import (
    CheckContext,
    DecisionParams,
    EvidenceError,
    Judgement,
    NegativeControl,
    Verdict,
    error_judgement,
    present,
    read_json,
)

METRICS = "canary_metrics.json"
OUT = "evaluate_canary.out"


class Params(DecisionParams):
    """The canary's parameters: what to serve and send, and the SLO matrix it is judged against."""

    source: Literal["local"] = "local"
    baseline_ref: str = Field("HEAD", min_length=1, description="git ref served as the baseline")
    requests: int = Field(2000, ge=1, le=100_000, description="requests sent to each side")
    max_duration_s: float = Field(40.0, gt=0, le=3600, description="stop sending after this long")
    startup_timeout_s: float = Field(60.0, gt=0, le=600)
    p99_ratio_max: float = Field(1.20, gt=0, description="p99 latency candidate/baseline")
    error_rate_max: float = Field(0.01, gt=0, lt=1, description="5xx (and unanswered) share")
    cpu_percent_max: float = Field(80.0, gt=0, le=100)
    mem_percent_max: float = Field(85.0, gt=0, le=100)
    min_samples: int = Field(200, ge=3, description="fewer answered requests: INCONCLUSIVE")


def run(params: Params, ctx: CheckContext) -> Judgement:
    from montage.core.files import atomic_write_text
    from montage.ops.canary.collect import collect
    from montage.ops.canary.judge import judge

    metrics = collect(
        ctx.repo_root,
        baseline_ref=params.baseline_ref,
        requests=params.requests,
        max_duration_s=params.max_duration_s,
        startup_timeout_s=params.startup_timeout_s,
    )
    ctx.write_json(METRICS, metrics)
    atomic_write_text(ctx.evidence_dir / OUT, judge(metrics, params).text(metrics))
    return rejudge(params, ctx.evidence_dir)


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    from montage.ops.canary.judge import judge

    expected = (
        f"canary SLOs on synthetic local load: p99 ratio <= {params.p99_ratio_max:g}, "
        f"5xx < {params.error_rate_max:g}, ImportError == 0, CPU <= {params.cpu_percent_max:g} %, "
        f"MEM <= {params.mem_percent_max:g} %"
    )
    files = present(evidence_dir, [METRICS, OUT])
    try:
        metrics = read_json(evidence_dir / METRICS)
        result = judge(metrics, params)
    except EvidenceError as exc:
        return error_judgement(expected, str(exc), files)
    except (KeyError, TypeError, ValueError) as exc:
        return error_judgement(expected, f"{METRICS} is malformed ({type(exc).__name__}: {exc})", files)
    # the canary's PARTIAL (some SLOs undecided) is INCONCLUSIVE for the gate: never PASS
    verdict = result.verdict if result.verdict in (Verdict.PASS, Verdict.FAIL) else Verdict.INCONCLUSIVE
    not_passed = [f"{r.name} {r.verdict.value}" for r in result.slos if r.verdict is not Verdict.PASS]
    reason = f"canary {result.verdict}" + (f": {', '.join(not_passed)}" if not_passed else ": every SLO met")
    return Judgement(verdict=verdict, value=result.to_dict(), expected=expected, reason=reason, evidence=files)


# Hook for the canary's controls (a slower candidate, a 5xx candidate, a failing optional import):
# they change the candidate's environment, which the canary helper (montage/ops/canary/) provides.
CONTROLS: tuple[NegativeControl, ...] = ()
