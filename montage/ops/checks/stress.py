"""``stress``: N real Montage jobs under a real cgroup memory limit, with a negative control.

Runs the app's stress command (``python -m montage.runtime.stress``, see that module) which writes
``stress_metrics.json``; the verdict is a pure function of that file:

* no writable memory cgroup, calibration failed, or the jobs peaked far below the target (not a test
  of the limit): INCONCLUSIVE with the reason;
* the negative control (same jobs under a lower limit) produced no OOM kill: INCONCLUSIVE (the limit
  was not real);
* any OOM kill in the stress run, a failed job, a result whose duration is wrong, or a job cgroup
  left behind: FAIL;
* else PASS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from montage.core.proc import run_logged
from montage.ops.checks.base import (
    CheckContext,
    EvidenceError,
    Judgement,
    KindParams,
    NegativeControl,
    Verdict,
    error_judgement,
    read_json,
)

METRICS = "stress_metrics.json"
STRESS_COMMAND = ["{python}", "-m", "montage.runtime.stress"]


class Params(KindParams):
    limit_mb: int = Field(2048, ge=64)
    control_limit_mb: int = Field(1536, ge=64)
    jobs: int = Field(3, ge=1, le=16)
    control_jobs: int = Field(4, ge=1, le=16, description="jobs in the negative control (under control_limit_mb)")
    target_mb: float = Field(600.0, gt=0)
    min_peak_fraction: float = Field(0.7, gt=0, le=1, description="mean job peak below this x target: INCONCLUSIVE")
    result_tolerance_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(3600.0, gt=0)


def run(params: Params, ctx: CheckContext) -> Judgement:
    argv = [*STRESS_COMMAND, "--out", str(ctx.evidence_dir), "--limit-mb", str(params.limit_mb),
            "--control-limit-mb", str(params.control_limit_mb), "--jobs", str(params.jobs),
            "--control-jobs", str(params.control_jobs), "--target-mb", f"{params.target_mb:g}"]  # fmt: skip
    run_logged(argv, ctx.evidence_dir / "stress_output.txt", ctx.repo_root, params.timeout_s, ctx.env)
    return rejudge(params, ctx.evidence_dir)


def _expected(params: Params) -> str:
    return (
        f"{params.jobs} jobs of ~{params.target_mb:g} MB under {params.limit_mb} MB: 0 OOM kills, all succeeded "
        f"with a valid result; the control ({params.control_jobs} jobs under {params.control_limit_mb} MB) OOM-kills"
    )


def _inconclusive(params: Params, value: Any, reason: str, evidence: list[str]) -> Judgement:
    return Judgement(verdict=Verdict.INCONCLUSIVE, value=value, expected=_expected(params), reason=reason,
                     evidence=evidence)  # fmt: skip


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    evidence = [n for n in (METRICS, "stress_output.txt") if (evidence_dir / n).is_file()]
    try:
        metrics = read_json(evidence_dir / METRICS)
    except EvidenceError as exc:
        return error_judgement(_expected(params), f"{exc} (see stress_output.txt)", evidence)
    status = metrics.get("status")
    if status != "measured":
        return _inconclusive(params, {"status": status}, f"{status}: {metrics.get('reason')}", evidence)
    stress, control = metrics.get("stress"), metrics.get("control")
    if not isinstance(stress, dict) or not isinstance(control, dict):
        return _inconclusive(params, {"status": status}, "the stress run did not complete", evidence)
    peaks = [p for p in stress.get("per_job_peak_mb", []) if isinstance(p, int | float)]
    value = {
        "oom_kills": stress.get("oom_kills"),
        "control_oom_kills": control.get("oom_kills"),
        "per_job_peak_mb": stress.get("per_job_peak_mb"),
        "total_peak_mb": stress.get("parent_peak_mb"),
        "states": [j.get("state") for j in stress.get("jobs", [])],
        "cgroup": f"v{metrics.get('cgroup_version')} {metrics.get('cgroup_path')}",
        "leftover_cgroups": metrics.get("leftover_cgroups"),
    }
    if metrics.get("leftover_cgroups"):
        return Judgement(verdict=Verdict.FAIL, value=value, expected=_expected(params), evidence=evidence,
                         reason=f"cgroups left behind: {metrics['leftover_cgroups']}")  # fmt: skip
    if len(peaks) != params.jobs:
        return _inconclusive(params, value, f"{len(peaks)} of {params.jobs} jobs have a cgroup peak", evidence)
    mean = sum(peaks) / len(peaks)
    if mean < params.min_peak_fraction * params.target_mb:
        return _inconclusive(params, value, f"jobs peaked at {mean:.0f} MB on average, below "
                             f"{params.min_peak_fraction:g} x {params.target_mb:g} MB: not a test of the limit",
                             evidence)  # fmt: skip
    if not control.get("oom_kills"):
        return _inconclusive(params, value, f"the negative control under {params.control_limit_mb} MB had no OOM "
                             "kill: the limit was not shown to be real", evidence)  # fmt: skip
    failures = []
    if stress.get("oom_kills"):
        failures.append(f"{stress['oom_kills']} OOM kill(s) ({stress.get('oom_kill_sources')})")
    for job in stress.get("jobs", []):
        result_s = job.get("result_s")
        if job.get("state") != "succeeded":
            failures.append(f"job {job.get('job_id')} {job.get('state')}: {job.get('error')}")
        elif not isinstance(result_s, int | float) or abs(result_s - metrics["output_s"]) > params.result_tolerance_s:
            failures.append(f"job {job.get('job_id')} result lasts {result_s} s, expected {metrics['output_s']} s")
    if failures:
        return Judgement(verdict=Verdict.FAIL, value=value, expected=_expected(params), evidence=evidence,
                         reason="; ".join(failures))  # fmt: skip
    return Judgement(
        verdict=Verdict.PASS, value=value, expected=_expected(params), evidence=evidence,
        reason=(f"{params.jobs} jobs peaked at {', '.join(f'{p:.0f}' for p in peaks)} MB (total "
                f"{stress.get('parent_peak_mb')} MB) under {params.limit_mb} MB with 0 OOM kills; the control "
                f"under {params.control_limit_mb} MB had {control['oom_kills']}"),
    )  # fmt: skip


# Its over-limit run is part of every run (the kind is ERROR unless that control is OOM-killed).
CONTROLS = (
    NegativeControl("over-limit", "control_jobs under control_limit_mb must be OOM-killed", None, built_in=True),
)
