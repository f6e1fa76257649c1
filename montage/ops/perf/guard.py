"""The perf guard: measure the working tree against the baseline commit and decide PASS / FAIL / INCONCLUSIVE.

Every decision is an interleaved A/B run: the baseline commit (``--baseline REF``, else the commit
the stored baseline was captured at) is checked out in a temporary ``git worktree`` and both
trees run the same workload by the same Python, alternating (B A, A B, ...), so neighbours' noise
on a shared machine falls on both sides of a pair. Each workload *stage* (``plan``: probe, cold
analysis, selection; ``render``) is judged on its own, with its own limit; any stage failing fails.

* CPU-time fps: the median of the per-pair ratios candidate / baseline, with the order-statistic
  interval of that median (:func:`montage.ops.stats.median_interval`: its coverage is exact and is
  the one reported; 95 % needs at least 6 pairs). FAIL when it lies wholly below ``1 - limit``,
  PASS when it clears it.
* ffmpeg peak RSS: the same, against ``1 + max_rss_growth``; RSS is nearly deterministic, so after
  ``min_pairs`` pairs it FAILs early when every pair ratio is beyond the limit by ``rss_early_margin``.

Pairs are added until every figure decides or the time budget is spent (INCONCLUSIVE). The stored
baseline (perf_baseline.json) never decides: on a shared machine its samples drift with the load
at capture time (a real 13 % regression passed 5 times in 6 against it). When the environment
fingerprint matches, the guard reports the candidate's ratio to it as a *trend* only.

Reports written before issue 14 (``schema`` 1: stored-baseline mode, ratio of medians with a
paired bootstrap) are re-judged by the rules they were judged with (:func:`judge_v1`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from montage.core import git as core_git
from montage.ops import stats
from montage.ops.checks.perf_guard import Params
from montage.ops.perf import baseline as baseline_mod
from montage.ops.perf.fingerprint import differences
from montage.ops.perf.measure import RunSample
from montage.ops.perf.runner import Runner, Side, make_side
from montage.ops.stats import Decision
from montage.ops.verdict import Verdict

REPORT_SCHEMA = 2
# The parts of the kind's Params a perf report records (``thresholds`` and ``config``): enough to
# re-judge its samples.  Params (montage/ops/checks/perf_guard.py) is the one declaration.
THRESHOLD_KEYS = ("max_fps_drop", "max_rss_growth", "stage_max_drop")
CONFIG_KEYS = (
    "stored_runs", "min_pairs", "max_pairs", "budget_s", "seed", "confidence", "resamples", "rss_early_margin",
)  # fmt: skip


def report_params(params: Params) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(thresholds, config)`` as a perf report stores them."""
    data = params.model_dump()
    return {k: data[k] for k in THRESHOLD_KEYS}, {k: data[k] for k in CONFIG_KEYS}


def params_of_report(doc: dict[str, Any]) -> Params:
    """The parameters a stored report was judged with (raises ValueError on unknown or bad ones)."""
    return Params.model_validate({**doc["thresholds"], **doc["config"]})


@dataclass
class GuardResult:
    """Everything a report needs; ``rejudge`` recomputes the decision from the stored samples."""

    verdict: Verdict
    mode: str
    reason: str
    decisions: dict[str, Decision]
    params: Params
    sides: dict[str, dict[str, Any]]
    samples: list[RunSample]
    baseline_file: dict[str, Any]
    fingerprint: dict[str, Any]
    fingerprint_differences: list[str]
    elapsed_s: float
    steps: list[str] = field(default_factory=list)
    prior_samples: list[RunSample] = field(default_factory=list)
    trend: dict[str, Any] = field(default_factory=dict)

    def rejudge(self) -> tuple[Verdict, dict[str, Decision]]:
        """The decision recomputed from the stored samples alone."""
        return rejudge(self.mode, self.samples, self.baseline_file["samples"], self.params, schema=REPORT_SCHEMA)


def rejudge(
    mode: str,
    samples: Sequence[RunSample],
    stored_baseline: Sequence[dict[str, Any]],
    params: Params,
    *,
    schema: int = REPORT_SCHEMA,
) -> tuple[Verdict, dict[str, Decision]]:
    """Judge the samples of a finished guard run again, by the rules of its report's ``schema``."""
    candidate = measured(samples, "candidate")
    if schema < 2:
        if mode == "stored":
            base = [RunSample.from_dict(d) for d in stored_baseline]
            return judge_v1(candidate, base, paired=False, params=params)
        return judge_v1(candidate, measured(samples, "baseline"), paired=True, params=params)
    if not samples:  # a run that could not pair its stages measured nothing
        return Verdict.INCONCLUSIVE, {}
    return judge(candidate, measured(samples, "baseline"), params=params)


def stages_of(samples: Sequence[RunSample]) -> list[str]:
    """Stage names in the order they first ran."""
    return list(dict.fromkeys(s.stage for s in samples))


def judge(
    candidate: Sequence[RunSample], baseline: Sequence[RunSample], *, params: Params
) -> tuple[Verdict, dict[str, Decision]]:
    """Decide from interleaved pairs, stage by stage (pure: re-judging stored samples gives the same verdict)."""
    decisions: dict[str, Decision] = {}
    for stage in stages_of([*candidate, *baseline]):
        c = [s for s in candidate if s.stage == stage]
        b = [s for s in baseline if s.stage == stage]
        n = min(len(c), len(b))
        c, b = c[:n], b[:n]  # a pair is the i-th run of each side
        common: dict[str, Any] = {"confidence": params.confidence, "min_samples": params.min_pairs}
        decisions[f"cpu:{stage}"] = stats.judge_pairs(
            [s.cpu_fps for s in c], [s.cpu_fps for s in b], threshold=1.0 - params.max_drop(stage), worse="lower",
            **common,
        )  # fmt: skip
        decisions[f"rss:{stage}"] = stats.judge_pairs(
            [s.ffmpeg_rss_mb for s in c], [s.ffmpeg_rss_mb for s in b], threshold=1.0 + params.max_rss_growth,
            worse="higher", early_margin=params.rss_early_margin, **common,
        )  # fmt: skip
    return stats.combine([d.verdict for d in decisions.values()]), decisions


def judge_v1(
    candidate: Sequence[RunSample],
    baseline: Sequence[RunSample],
    *,
    paired: bool,
    params: Params,
) -> tuple[Verdict, dict[str, Decision]]:
    """The rule of reports before issue 14: bootstrap of the ratio of medians (kept to re-judge them)."""
    decision = params.decision()
    common: dict[str, Any] = {
        "paired": paired,
        "min_samples": params.min_pairs if paired else decision.min_samples,
        "confidence": decision.confidence,
        "resamples": decision.resamples,
        "seed": decision.seed,
    }
    decisions = {
        "fps": stats.judge_ratio(
            [s.cpu_fps for s in candidate],
            [s.cpu_fps for s in baseline],
            threshold=1.0 - params.max_fps_drop,
            worse="lower",
            **common,
        ),
        "rss": stats.judge_ratio(
            [s.ffmpeg_rss_mb for s in candidate],
            [s.ffmpeg_rss_mb for s in baseline],
            threshold=1.0 + params.max_rss_growth,
            worse="higher",
            **common,
        ),
    }
    return stats.combine([d.verdict for d in decisions.values()]), decisions


def measured(samples: Sequence[RunSample], side: str) -> list[RunSample]:
    return [s for s in samples if s.side == side and not s.warmup]


def trend(
    candidate: Sequence[RunSample], stored: Sequence[RunSample], fingerprint_differs: list[str]
) -> dict[str, Any]:
    """The candidate's CPU-time fps against the stored samples, per stage: reported, never decided on."""
    if fingerprint_differs:
        return {"compared": False, "why": f"fingerprint differs ({', '.join(fingerprint_differs)})"}
    ratios: dict[str, float] = {}
    for stage in stages_of(candidate):
        c = [s.cpu_fps for s in candidate if s.stage == stage]
        b = [s.cpu_fps for s in stored if s.stage == stage]
        if c and b:
            ratios[stage] = stats.median(c) / stats.median(b)
    return {
        "compared": bool(ratios),
        "why": "ratio of medians against perf_baseline.json's samples (informational: it never decides)",
        "cpu_fps_ratio": ratios,
    }


def _say_pair(say: Callable[[str], None], i: int, candidate: list[RunSample], base: list[RunSample]) -> None:
    parts = [f"{c.stage} {c.cpu_fps / b.cpu_fps:.3f}" for c, b in zip(candidate, base, strict=False)]
    say(f"perf guard: A/B pair {i + 1}: CPU-time fps ratio candidate/baseline {', '.join(parts)}")


def _ab(
    runner: Runner,
    candidate: Side,
    base: Side,
    *,
    params: Params,
    deadline: float,
    say: Callable[[str], None],
) -> tuple[Verdict, dict[str, Decision], list[RunSample], str]:
    # One warm-up each: the baseline worktree is fresh (no .pyc yet), and so page caches are warm for both.
    samples = [*runner.run(base, warmup=True), *runner.run(candidate, warmup=True)]
    pair_times: list[float] = []
    verdict: Verdict = Verdict.INCONCLUSIVE
    decisions: dict[str, Decision] = {}
    for i in range(params.max_pairs):
        t0 = time.monotonic()
        order = (base, candidate) if i % 2 == 0 else (candidate, base)
        runs: dict[str, list[RunSample]] = {}
        for side in order:
            runs[side.name] = runner.run(side)
            samples.extend(runs[side.name])
        pair_times.append(time.monotonic() - t0)
        _say_pair(say, i, runs["candidate"], runs["baseline"])
        verdict, decisions = judge(measured(samples, "candidate"), measured(samples, "baseline"), params=params)
        if verdict is not Verdict.INCONCLUSIVE:
            return verdict, decisions, samples, f"decided after {i + 1} interleaved pairs"
        if time.monotonic() + max(pair_times) > deadline:
            return verdict, decisions, samples, f"time budget spent after {i + 1} pairs without a decision"
    return verdict, decisions, samples, f"still undecided after the maximum of {params.max_pairs} pairs"


def run_guard(
    repo: Path,
    *,
    baseline_path: Path,
    workdir: Path,
    baseline_ref: str | None = None,
    params: Params | None = None,
    say: Callable[[str], None] = print,
    runner: Runner | None = None,
) -> GuardResult:
    """Measure ``repo``'s working tree against the baseline commit (see the module docstring)."""
    params = params or Params()
    started = time.monotonic()
    deadline = started + params.budget_s
    data, base_samples = baseline_mod.load(baseline_path)
    runner = runner or Runner.prepare(workdir)
    candidate = make_side("candidate", repo)
    fp = runner.fingerprint(candidate)
    diff = differences(fp, data["fingerprint"])
    steps: list[str] = []
    samples: list[RunSample] = []

    def result(
        verdict: Verdict, reason: str, decisions: dict[str, Decision], sides: list[Side], found: dict[str, Any]
    ) -> GuardResult:
        return GuardResult(
            verdict=verdict,
            mode="ab",
            reason=reason,
            decisions=decisions,
            params=params,
            sides={s.name: s.describe() for s in sides},
            samples=samples,
            baseline_file={k: data[k] for k in ("fps", "rss_mb", "wall_fps", "commit", "captured_at", "fingerprint")}
            | {"path": str(baseline_path), "samples": data["samples"]},
            fingerprint=fp,
            fingerprint_differences=diff,
            elapsed_s=time.monotonic() - started,
            steps=steps,
            trend=found,
        )

    ref = baseline_ref or str(data["commit"])
    if not ref:
        msg = "the baseline records no commit to A/B against; pass --baseline REF"
        return result(Verdict.INCONCLUSIVE, msg, {}, [candidate], {})
    why_ref = f"--baseline {baseline_ref}" if baseline_ref else f"the commit of {baseline_path.name}"
    say(f"perf guard: interleaved A/B against {ref} ({why_ref}); stages {', '.join(candidate.workload.stage_names)}")
    with core_git.temporary_worktree(repo, ref, prefix="montage-perf-") as worktree:
        base = make_side("baseline", worktree.path)
        base = Side(name=base.name, tree=base.tree, commit=base.commit, dirty=False, workload=base.workload)
        if base.workload.stage_names != candidate.workload.stage_names:
            msg = (
                f"the baseline {ref} measures stages {base.workload.stage_names} ({base.workload.kind}), the "
                f"candidate {candidate.workload.stage_names} ({candidate.workload.kind}): not comparable; A/B "
                "against a commit with this workload (--baseline REF), or recapture the baseline there"
            )
            steps.append(msg)
            return result(Verdict.INCONCLUSIVE, msg, {}, [candidate, base], {})
        verdict, decisions, ab_samples, why = _ab(runner, candidate, base, params=params, deadline=deadline, say=say)
    samples.extend(ab_samples)
    found = trend(measured(samples, "candidate"), base_samples, diff)
    steps.append(f"A/B against {ref} ({base.commit[:12]}): {verdict.value}, {why}")
    if found.get("compared"):
        shown = ", ".join(f"{k} {v:.3f}" for k, v in found["cpu_fps_ratio"].items())
        steps.append(f"trend against the stored baseline (not a decision): CPU-time fps ratio {shown}")
    else:
        steps.append(f"no trend against the stored baseline: {found.get('why', 'no common stage')}")
    return result(verdict, f"interleaved A/B against {ref}: {why}", decisions, [candidate, base], found)
