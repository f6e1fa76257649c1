"""The perf guard's decision on interleaved pairs: median of the pair ratios, an honest interval, per stage."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable

import pytest

from montage.ops import stats
from montage.ops.checks.perf_guard import Params
from montage.ops.perf.guard import judge
from montage.ops.perf.measure import RunSample
from montage.ops.stats import Verdict

from .test_guard import sample

# Pair-ratio distributions with a known median (1.0 before scaling): skewed, heavy-tailed, bimodal.
DRAWS: dict[str, Callable[[random.Random], float]] = {
    "lognormal": lambda r: math.exp(r.gauss(0.0, 0.05)),
    "skewed": lambda r: 1.0 + (r.expovariate(1.0) - math.log(2)) * 0.03,  # median of Exp(1) is ln 2
    "heavy-tailed": lambda r: 1.0 + 0.02 * math.tan(math.pi * (r.random() - 0.5)),  # Cauchy, median 0
    "bimodal": lambda r: 1.0 + (r.choice((-1, 1)) * (0.04 + abs(r.gauss(0, 0.01)))),
}


def _coverage(interval_of: Callable[[list[float]], stats.Interval | None], n: int, draw: str, trials: int) -> float:
    rng = random.Random(f"{draw}-{n}")
    hits = 0
    for _ in range(trials):
        values = [0.9 * DRAWS[draw](rng) for _ in range(n)]
        iv = interval_of(values)
        assert iv is not None
        hits += iv.low <= 0.9 <= iv.high
    return hits / trials


@pytest.mark.parametrize("n", [6, 9, 14, 24])
@pytest.mark.parametrize("draw", sorted(DRAWS))
def test_median_interval_covers_what_it_claims(n: int, draw: str) -> None:
    """Simulated: the order-statistic interval covers the true median pair ratio as often as it says (>= 95 %)."""
    trials = 3000
    claimed = stats.median_interval([1.0] * n).confidence  # type: ignore[union-attr]
    seen = _coverage(lambda v: stats.median_interval(v), n, draw, trials)
    se = math.sqrt(claimed * (1 - claimed) / trials)
    assert claimed >= 0.95
    assert abs(seen - claimed) < 4 * se + 0.003, (n, draw, seen, claimed)


def test_the_simulation_catches_an_interval_that_overclaims() -> None:
    """Negative control of the coverage test: the old paired bootstrap of 3 pairs says 95 % and covers ~75 %."""

    def old(values: list[float]) -> stats.Interval:
        return stats.bootstrap_ratio(values, [1.0] * len(values), paired=True, resamples=200, seed=1)

    seen = _coverage(old, 3, "lognormal", 600)
    assert old([0.9, 0.91, 0.92]).confidence == 0.95
    assert seen < 0.85


def test_too_few_pairs_for_the_claimed_coverage_is_inconclusive() -> None:
    assert stats.median_interval([0.8] * 5) is None
    assert stats.min_count_for(0.95) == 6
    d = stats.judge_pairs([80.0] * 5, [100.0] * 5, threshold=0.9, worse="lower")
    assert d.verdict is Verdict.INCONCLUSIVE and "need 6" in d.reason


def test_pairs_decide_through_load_that_moves_both_sides() -> None:
    """Each pair 13 % slower while the machine's load swings both sides by 40 %: the pairs' own ratios FAIL it."""
    base = [100.0, 60.0, 95.0, 62.0, 99.0, 58.0, 97.0]
    cand = [b * 0.87 * f for b, f in zip(base, [1.0, 1.01, 0.99, 1.0, 1.02, 0.99, 1.0], strict=True)]
    d = stats.judge_pairs(cand, base, threshold=0.9, worse="lower")
    assert d.verdict is Verdict.FAIL and d.interval is not None and d.interval.high < 0.9
    # the ratio of the two sides' medians, unpaired, cannot tell (the load swing swamps the 13 %)
    unpaired = stats.judge_ratio(cand, base, threshold=0.9, worse="lower", resamples=500)
    assert unpaired.verdict is Verdict.INCONCLUSIVE
    same = stats.judge_pairs([b * f for b, f in zip(base, [1.0, 1.01, 0.99, 1.0, 1.02, 0.99, 1.0], strict=True)],
                             base, threshold=0.9, worse="lower")  # fmt: skip
    assert same.verdict is Verdict.PASS


def test_rss_far_beyond_its_limit_fails_after_three_pairs() -> None:
    far = stats.judge_pairs(
        [131.0, 132.0, 130.5], [100.0, 100.5, 99.8], threshold=1.15, worse="higher", early_margin=0.05
    )
    assert far.verdict is Verdict.FAIL and "every one of 3 pair ratios" in far.reason
    near = stats.judge_pairs([118.0, 119.0, 118.5], [100.0] * 3, threshold=1.15, worse="higher", early_margin=0.05)
    assert near.verdict is Verdict.INCONCLUSIVE  # beyond the limit, not far beyond it: wait for 6 pairs
    mixed = stats.judge_pairs([131.0, 101.0, 130.0], [100.0] * 3, threshold=1.15, worse="higher", early_margin=0.05)
    assert mixed.verdict is Verdict.INCONCLUSIVE
    # the early rule is only for the figure that asks for it
    cpu = stats.judge_pairs([50.0] * 3, [100.0] * 3, threshold=0.9, worse="lower")
    assert cpu.verdict is Verdict.INCONCLUSIVE


def _run(stage: str, side: str, fps: float, rss: float = 130.0) -> RunSample:
    return dataclasses.replace(sample(side, fps, rss), stage=stage)


def test_a_slower_analysis_fails_the_guard_while_the_render_passes() -> None:
    """The main job per stage: the plan stage (probe, cold analysis, selection) twice as slow is a FAIL."""
    runs_c, runs_b = [], []
    for i in range(6):
        wobble = 1.0 + 0.01 * (i % 3 - 1)
        runs_b += [_run("plan", "baseline", 140.0), _run("render", "baseline", 30.0)]
        runs_c += [_run("plan", "candidate", 70.0 * wobble), _run("render", "candidate", 30.0 * wobble)]
    verdict, decisions = judge(runs_c, runs_b, params=Params())
    assert verdict is Verdict.FAIL
    assert decisions["cpu:plan"].verdict is Verdict.FAIL
    assert decisions["cpu:render"].verdict is Verdict.PASS
    assert set(decisions) == {"cpu:plan", "rss:plan", "cpu:render", "rss:render"}
    # a stage's own limit: a 2x slower plan stage passes only with a limit above 50 %
    loose, _ = judge(runs_c, runs_b, params=Params(stage_max_drop={"plan": 0.6}))
    assert loose is Verdict.PASS
    with pytest.raises(ValueError, match="fractions between 0 and 1"):
        Params(stage_max_drop={"plan": 1.5})
