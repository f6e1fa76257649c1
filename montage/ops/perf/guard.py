"""The perf guard: measure the working tree and decide PASS / FAIL / INCONCLUSIVE.

1. Same environment fingerprint as the stored baseline (and no ``--baseline REF``): measure the
   working tree and compare with the baseline's raw samples (unpaired bootstrap).
2. Different fingerprint, a suspected regression (step 1 not PASS), or ``--baseline REF``: an
   interleaved A/B run against the baseline commit checked out in a temporary ``git worktree``,
   both sides run by the same Python with cwd (and PYTHONPATH) at their own tree (paired bootstrap).
   Pairs are added until the intervals decide, or until the time budget is spent: INCONCLUSIVE.

FAIL only when an interval lies wholly beyond a threshold (fps ratio below 1 - max_fps_drop, or
RSS ratio above 1 + max_rss_growth); PASS only when both clear them.
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

# The parts of the kind's Params a perf report records (``thresholds`` and ``config``): enough to
# re-judge its samples.  Params (montage/ops/checks/perf_guard.py) is the one declaration.
THRESHOLD_KEYS = ("max_fps_drop", "max_rss_growth")
CONFIG_KEYS = ("stored_runs", "min_pairs", "max_pairs", "budget_s", "seed", "confidence", "resamples")


def report_params(params: Params) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(thresholds, config)`` as a perf report stores them."""
    data = params.model_dump()
    return {k: data[k] for k in THRESHOLD_KEYS}, {k: data[k] for k in CONFIG_KEYS}


def params_of_report(doc: dict[str, Any]) -> Params:
    """The parameters a stored report was judged with (raises ValueError on unknown or bad ones)."""
    return Params.model_validate({**doc["thresholds"], **doc["config"]})


@dataclass
class GuardResult:
    """Everything a report needs; ``judge`` recomputes the decision from the stored samples."""

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

    def rejudge(self) -> tuple[Verdict, dict[str, Decision]]:
        """The decision recomputed from the stored samples alone."""
        return rejudge(self.mode, self.samples, self.baseline_file["samples"], self.params)


def rejudge(
    mode: str,
    samples: Sequence[RunSample],
    stored_baseline: Sequence[dict[str, Any]],
    params: Params,
) -> tuple[Verdict, dict[str, Decision]]:
    """Judge the samples of a finished guard run again (mode ``stored`` or ``ab``)."""
    candidate = measured(samples, "candidate")
    if mode == "stored":
        base = [RunSample.from_dict(d) for d in stored_baseline]
        return judge(candidate, base, paired=False, params=params)
    return judge(candidate, measured(samples, "baseline"), paired=True, params=params)


def judge(
    candidate: Sequence[RunSample],
    baseline: Sequence[RunSample],
    *,
    paired: bool,
    params: Params,
) -> tuple[Verdict, dict[str, Decision]]:
    """Decide from raw samples (pure and seeded: re-judging stored samples gives the same verdict)."""
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


def _ab(
    runner: Runner,
    candidate: Side,
    base: Side,
    *,
    params: Params,
    deadline: float,
    say: Callable[[str], None],
    candidate_warm: bool = False,
) -> tuple[Verdict, dict[str, Decision], list[RunSample], str]:
    # The baseline worktree is always fresh (cold caches, no .pyc yet); the candidate is already
    # warm when the stored-baseline comparison ran just before.
    samples = [runner.run(base, warmup=True)]
    if not candidate_warm:
        samples.append(runner.run(candidate, warmup=True))
    pair_times: list[float] = []
    verdict: Verdict = Verdict.INCONCLUSIVE
    decisions: dict[str, Decision] = {}
    for i in range(params.max_pairs):
        t0 = time.monotonic()
        order = (base, candidate) if i % 2 == 0 else (candidate, base)
        for side in order:
            samples.append(runner.run(side))
        pair_times.append(time.monotonic() - t0)
        c, b = measured(samples, "candidate"), measured(samples, "baseline")
        say(
            f"perf guard: A/B pair {i + 1}: candidate {c[-1].cpu_fps:.1f} fps, "
            f"baseline {b[-1].cpu_fps:.1f} fps (CPU time)"
        )
        # Fewer than min_pairs pairs is INCONCLUSIVE inside judge(), so a re-judge agrees.
        verdict, decisions = judge(c, b, paired=True, params=params)
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
    """Measure ``repo``'s working tree against the baseline (see the module docstring)."""
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
    prior: list[RunSample] = []

    def result(
        verdict: Verdict, mode: str, reason: str, decisions: dict[str, Decision], sides: list[Side]
    ) -> GuardResult:
        return GuardResult(
            verdict=verdict,
            mode=mode,
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
            prior_samples=prior,
        )

    if baseline_ref is None and not diff:
        say(f"perf guard: fingerprint matches {baseline_path}; measuring the working tree")
        samples.append(runner.run(candidate, warmup=True))
        for _ in range(params.stored_runs):
            samples.append(runner.run(candidate))
        verdict, decisions = judge(measured(samples, "candidate"), base_samples, paired=False, params=params)
        steps.append(f"stored baseline: {verdict.value} ({decisions['fps'].reason}; rss {decisions['rss'].reason})")
        if verdict is Verdict.PASS:
            return result(verdict, "stored", "against the stored baseline (same fingerprint)", decisions, [candidate])
        reason = f"suspected regression against the stored baseline ({verdict.value}); confirming by A/B"
        prior, samples = samples, []
    elif baseline_ref is not None:
        reason = f"--baseline {baseline_ref} forces an A/B run"
    else:
        reason = f"environment differs from the baseline's ({', '.join(diff)}); A/B run"
    say(f"perf guard: {reason}")
    steps.append(reason)
    ref = baseline_ref or str(data["commit"])
    if not ref:
        msg = "the baseline records no commit to A/B against; pass --baseline REF"
        return result(Verdict.INCONCLUSIVE, "ab", msg, {}, [candidate])
    with core_git.temporary_worktree(repo, ref, prefix="montage-perf-") as worktree:
        base = make_side("baseline", worktree.path)
        base = Side(name=base.name, tree=base.tree, commit=base.commit, dirty=False, workload=base.workload)
        verdict, decisions, ab_samples, why = _ab(
            runner,
            candidate,
            base,
            params=params,
            deadline=deadline,
            say=say,
            candidate_warm=bool(prior),
        )
    samples.extend(ab_samples)
    steps.append(f"A/B against {ref} ({base.commit[:12]}): {verdict.value}, {why}")
    return result(verdict, "ab", f"interleaved A/B against {ref}: {why}", decisions, [candidate, base])
