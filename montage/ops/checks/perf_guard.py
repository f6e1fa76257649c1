"""``perf_guard``: run the perf guard and keep its raw samples and report in the bundle.

Runs ``python -m montage.ops.perf guard`` with the thresholds of the gate entry (defaults: fps
-10 %, RSS +15 %), writing perf_report.json / .md / .svg into the evidence, with a copy of the
history (var/perf/history.jsonl) the report's plot was drawn from. The judgement is
recomputed from the stored raw samples (seeded bootstrap), so ``phase.verify`` gets the same
verdict. INCONCLUSIVE stays INCONCLUSIVE (never PASS). When phase 7's rollback switched the guard
off (``PERF_GUARD_ENABLED=false`` in the flags file) nothing is measured: INCONCLUSIVE.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from montage.core.files import canonical_json
from montage.core.proc import run_logged
from montage.ops.checks import _controls as _c
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

REPORT = "perf_report.json"
HISTORY = "history.jsonl"
FILES = ["guard.json", "guard.log", REPORT, "perf_report.md", "perf_report.svg", HISTORY]
EXIT_OF = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}
HISTORY_FILE = "var/perf/history.jsonl"
# the parameters a report must have been judged with for this gate entry to accept it
JUDGING = (
    "max_fps_drop", "max_rss_growth", "confidence", "resamples", "seed", "min_samples", "min_pairs",
    "stage_max_drop", "rss_early_margin",
)  # fmt: skip


class Params(DecisionParams):
    """The perf guard's parameters, declared once: the gate entry's ``with``, the guard's thresholds
    and measuring plan (:mod:`montage.ops.perf.guard`) and what a perf report records to re-judge."""

    max_fps_drop: float = Field(0.10, gt=0, lt=1, description="FAIL when CPU-time fps is surely lower by more")
    max_rss_growth: float = Field(0.15, gt=0, lt=1, description="FAIL when ffmpeg peak RSS is surely higher by more")
    baseline: str | None = Field(None, description="git ref: force an A/B run against it")
    baseline_file: str = Field("perf_baseline.json", min_length=1)
    budget_s: float = Field(90.0, gt=0, le=3600, description="time after which an undecided guard stops")
    timeout_s: float = Field(600.0, gt=0, le=7200)
    stored_runs: int = Field(4, ge=1, le=100, description="unused since issue 14 (reports before it: stored runs)")
    # Pairs decide on the median of their own ratios with an order-statistic interval, whose real
    # coverage is what it says: 95 % needs at least 6 pairs (then [min, max] covers 96.9 %).  Fewer
    # pairs decide only the early RSS FAIL below.
    min_pairs: int = Field(3, ge=3, le=100, description="fewer interleaved A/B pairs: INCONCLUSIVE")
    max_pairs: int = Field(24, ge=3, le=200, description="stop adding A/B pairs after this many")
    stage_max_drop: dict[str, float] = Field(
        default_factory=dict, description="per-stage CPU-time fps limit (stage -> fraction); else max_fps_drop"
    )
    rss_early_margin: float = Field(
        0.05, ge=0, lt=1, description="FAIL after min_pairs when every RSS pair ratio is beyond the limit by more"
    )

    @field_validator("stage_max_drop")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0 < v < 1}
        if bad:
            raise ValueError(f"stage limits must be fractions between 0 and 1, got {bad}")
        return value

    def max_drop(self, stage: str) -> float:
        """The CPU-time fps limit of ``stage``."""
        return self.stage_max_drop.get(stage, self.max_fps_drop)


def _flags_file(repo_root: Path) -> Path:
    from montage.core.flags import flags_path

    return flags_path(root=repo_root)


def run(params: Params, ctx: CheckContext) -> Judgement:
    from montage.ops.perf import policy

    flags = _flags_file(ctx.repo_root)
    if not policy.guard_enabled(flags):
        ctx.write_json("guard.json", {"disabled": True, "flag": policy.FLAG, "flags_file": str(flags)})
        return rejudge(params, ctx.evidence_dir)
    argv = [
        sys.executable, "-m", "montage.ops.perf", "--repo", str(ctx.repo_root), "guard",
        "--baseline-file", str(ctx.repo_root / params.baseline_file), "--report-dir", str(ctx.evidence_dir),
        "--history", str(ctx.repo_root / HISTORY_FILE), "--flags-file", str(flags),
        "--max-fps-drop", repr(params.max_fps_drop), "--max-rss-growth", repr(params.max_rss_growth),
        "--budget", repr(params.budget_s), "--seed", str(params.seed),
    ]  # fmt: skip
    argv += ["--params", canonical_json(params.model_dump(include=set(JUDGING)))]  # the rest of Params, once
    if params.baseline:
        argv += ["--baseline", params.baseline]
    done = run_logged(argv, ctx.evidence_dir / "guard.log", ctx.repo_root, params.timeout_s, ctx.env)
    ctx.write_json(
        "guard.json",
        {"disabled": False, "argv": done.argv, "exit_code": done.returncode, "timed_out": done.timed_out},
    )
    if (ctx.repo_root / HISTORY_FILE).is_file():  # the history the report's plot was drawn from
        shutil.copyfile(ctx.repo_root / HISTORY_FILE, ctx.evidence_dir / HISTORY)
    return rejudge(params, ctx.evidence_dir)


def _interval(decision: Any) -> Any:
    return decision.interval.to_dict() if decision.interval else None


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    from montage.ops.perf.guard import params_of_report
    from montage.ops.perf.guard import rejudge as judge_samples
    from montage.ops.perf.measure import RunSample

    expected = (
        f"per stage of the main job, CPU-time fps not surely lower than -{params.max_fps_drop:.0%} (or the stage's "
        f"own limit) and ffmpeg peak RSS not surely higher than +{params.max_rss_growth:.0%} (interval of the median "
        "of interleaved A/B pair ratios); PASS only when every figure clears"
    )
    schema = 1
    try:
        schema = int(json.loads((evidence_dir / REPORT).read_text(encoding="utf-8")).get("schema", 1))
    except (OSError, ValueError, AttributeError):
        pass  # judged below: a missing or unreadable report is an error
    if schema < 2:  # a report from before issue 14 keeps the expectation it was judged against
        expected = (
            f"CPU-time fps not surely lower than -{params.max_fps_drop:.0%} and ffmpeg peak RSS not surely higher "
            f"than +{params.max_rss_growth:.0%} (95 % bootstrap interval of the ratio); PASS only when both clear"
        )
    evidence = present(evidence_dir, FILES)
    try:
        record = read_json(evidence_dir / "guard.json")
    except EvidenceError as exc:
        return error_judgement(expected, str(exc), evidence)
    if record.get("disabled"):
        return Judgement(
            verdict=Verdict.INCONCLUSIVE,
            value={"disabled": True},
            expected=expected,
            reason=f"perf guard disabled: {record.get('flag')}=false in {record.get('flags_file')} (phase 7 rollback)",
            evidence=evidence,
        )
    if not (evidence_dir / REPORT).is_file():
        tail = ""
        if (evidence_dir / "guard.log").is_file():
            lines = (evidence_dir / "guard.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
            tail = lines[-1][:300] if lines else ""
        why = "timed out" if record.get("timed_out") else f"exit code {record.get('exit_code')}"
        return error_judgement(expected, f"the guard wrote no report ({why}): {tail}", evidence)
    try:
        doc = json.loads((evidence_dir / REPORT).read_text(encoding="utf-8"))
        judged_with = params_of_report(doc)
        verdict, decisions = judge_samples(
            doc["mode"],
            [RunSample.from_dict(s) for s in doc["samples"]],
            doc["baseline"]["samples"],
            judged_with,
            schema=int(doc.get("schema", 1)),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return error_judgement(expected, f"{REPORT} is unreadable: {type(exc).__name__}: {exc}", evidence)
    thresholds = {k: getattr(judged_with, k) for k in JUDGING}
    wanted = {k: getattr(params, k) for k in JUDGING}
    if thresholds != wanted:
        return error_judgement(expected, f"{REPORT} was judged with {thresholds}, the gate says {wanted}", evidence)
    if verdict.value != doc["verdict"] or EXIT_OF[verdict.value] != record.get("exit_code"):
        return error_judgement(
            expected,
            f"re-judged {verdict.value} but the report says {doc['verdict']} (exit {record.get('exit_code')})",
            evidence,
        )
    value = {
        "verdict": verdict.value,
        "mode": doc["mode"],
        **{f"{name.replace(':', '_')}_ratio": _interval(d) for name, d in decisions.items()},  # v1: fps, rss
        "candidate_commit": doc["sides"].get("candidate", {}).get("commit"),
        "baseline_commit": doc["sides"].get("baseline", {}).get("commit") or doc["baseline"].get("commit"),
        "runs": sum(1 for s in doc["samples"] if not s["warmup"]),
        "elapsed_s": doc["elapsed_s"],
    }
    reason = "; ".join([doc["reason"], *(f"{name} {d.reason}" for name, d in decisions.items())])
    return Judgement(verdict=Verdict(verdict.value), value=value, expected=expected, reason=reason, evidence=evidence)


CONTROLS = (
    NegativeControl("cpu-filter", "an extra filter in the render graph (~+15 % CPU)", _c.perf("cpu-filter")),
    NegativeControl("rss", "the render graph buffers every frame (RSS)", _c.perf("rss")),
)
