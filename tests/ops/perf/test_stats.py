"""The shared statistics on recorded samples: deterministic verdicts for a seed."""

from __future__ import annotations

import pytest

from montage.ops import stats
from montage.ops.stats import Verdict

# CPU-time fps of interleaved A/B guard runs recorded on a 2-core machine (A = baseline commit).
AA_BASE = [412.1, 409.8, 414.0, 411.3, 410.7, 413.2]
AA_CAND = [411.0, 413.5, 410.2, 412.8, 409.9, 412.4]
# Same machine, candidate rendering with a slower x264 preset (about 30 % more CPU per frame).
SLOW_CAND = [301.4, 305.2, 299.8, 303.3, 300.9, 302.7]
# Candidate 10 % slower with noise: the interval straddles the 0.90 threshold.
EDGE_CAND = [375.0, 366.0, 372.5, 368.0, 377.2, 364.1]


def test_median_odd_even_and_empty() -> None:
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        stats.median([])


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    a = stats.bootstrap_ratio(AA_CAND, AA_BASE, paired=True, seed=11)
    b = stats.bootstrap_ratio(AA_CAND, AA_BASE, paired=True, seed=11)
    c = stats.bootstrap_ratio(AA_CAND, AA_BASE, paired=True, seed=12)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.low <= a.point <= a.high


def test_recorded_interval_values_are_stable() -> None:
    # Pinned so that a change in the resampling scheme (which would change stored verdicts) is noticed.
    iv = stats.bootstrap_ratio(SLOW_CAND, AA_BASE, seed=0)
    assert iv.point == pytest.approx(302.05 / 411.7, rel=1e-12)
    assert iv.low == pytest.approx(0.7282187802516941, rel=1e-12)
    assert iv.high == pytest.approx(0.7393053016453383, rel=1e-12)


def test_aa_runs_pass_and_regression_fails() -> None:
    aa = stats.judge_ratio(AA_CAND, AA_BASE, threshold=0.90, worse="lower", paired=True, seed=1)
    slow = stats.judge_ratio(SLOW_CAND, AA_BASE, threshold=0.90, worse="lower", paired=True, seed=1)
    assert aa.verdict is Verdict.PASS
    assert slow.verdict is Verdict.FAIL
    assert "below 0.9000" in slow.reason


def test_straddling_interval_is_inconclusive() -> None:
    d = stats.judge_ratio(EDGE_CAND, AA_BASE, threshold=0.90, worse="lower", seed=3)
    assert d.interval is not None
    assert d.interval.low < 0.90 < d.interval.high
    assert d.verdict is Verdict.INCONCLUSIVE


def test_rss_growth_direction() -> None:
    base = [61.2, 61.3, 61.2, 61.4]
    same = [61.3, 61.2, 61.2, 61.3]
    grown = [75.0, 75.2, 74.9, 75.1]
    assert stats.judge_ratio(same, base, threshold=1.15, worse="higher").verdict is Verdict.PASS
    assert stats.judge_ratio(grown, base, threshold=1.15, worse="higher").verdict is Verdict.FAIL


def test_identical_samples_give_a_point_interval() -> None:
    iv = stats.bootstrap_ratio([50.0] * 5, [50.0] * 5, paired=True)
    assert iv.low == iv.high == iv.point == 1.0
    assert stats.decide(iv, threshold=1.15, worse="higher").verdict is Verdict.PASS


def test_too_few_samples_is_inconclusive_never_pass() -> None:
    d = stats.judge_ratio([400.0, 401.0], [400.0, 400.5], threshold=0.9, worse="lower")
    assert d.verdict is Verdict.INCONCLUSIVE
    assert d.interval is None
    assert "too few samples" in d.reason


def test_paired_is_tighter_when_noise_is_shared() -> None:
    # Both sides slowed by the same neighbour in runs 2 and 4: pairing cancels it.
    base = [400.0, 300.0, 400.0, 300.0, 400.0, 300.0]
    cand = [404.0, 303.0, 404.0, 303.0, 404.0, 303.0]
    paired = stats.bootstrap_ratio(cand, base, paired=True, seed=5)
    unpaired = stats.bootstrap_ratio(cand, base, paired=False, seed=5)
    assert paired.high - paired.low < unpaired.high - unpaired.low


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidate": [], "baseline": [1.0]}, "candidate: no samples"),
        ({"candidate": [1.0], "baseline": [0.0]}, "positive"),
        ({"candidate": [1.0, 2.0], "baseline": [1.0], "paired": True}, "equal sample counts"),
        ({"candidate": [float("nan")], "baseline": [1.0]}, "non-finite"),
        ({"candidate": [1.0], "baseline": [1.0], "confidence": 1.0}, "confidence"),
        ({"candidate": [1.0], "baseline": [1.0], "resamples": 10}, "resamples"),
    ],
)
def test_bad_inputs_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stats.bootstrap_ratio(**kwargs)  # type: ignore[arg-type]


def test_wilson_interval_known_values() -> None:
    # Reference values: Wilson 95 % for 0/20 is [0, 0.1611]; for 10/100 it is [0.0552, 0.1744].
    zero = stats.wilson_interval(0, 20)
    assert zero.low == 0.0
    assert zero.high == pytest.approx(0.1611, abs=1e-4)
    ten = stats.wilson_interval(10, 100)
    assert ten.low == pytest.approx(0.0552, abs=1e-4)
    assert ten.high == pytest.approx(0.1744, abs=1e-4)
    with pytest.raises(ValueError):
        stats.wilson_interval(3, 0)
    with pytest.raises(ValueError):
        stats.wilson_interval(5, 4)


def test_wilson_with_decide_for_error_rates() -> None:
    # 2 errors in 10,000 requests is clearly under a 1 % SLO; 300 in 10,000 is clearly over.
    ok = stats.decide(stats.wilson_interval(2, 10_000), threshold=0.01, worse="higher")
    bad = stats.decide(stats.wilson_interval(300, 10_000), threshold=0.01, worse="higher")
    few = stats.decide(stats.wilson_interval(0, 50), threshold=0.01, worse="higher")
    assert (ok.verdict, bad.verdict, few.verdict) == (Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE)


def test_combine() -> None:
    assert stats.combine([Verdict.PASS, Verdict.PASS]) is Verdict.PASS
    assert stats.combine([Verdict.PASS, Verdict.INCONCLUSIVE]) is Verdict.INCONCLUSIVE
    assert stats.combine([Verdict.INCONCLUSIVE, Verdict.FAIL]) is Verdict.FAIL
    assert stats.combine([]) is Verdict.INCONCLUSIVE


def test_decision_serialises() -> None:
    d = stats.judge_ratio(AA_CAND, AA_BASE, threshold=0.9, worse="lower", seed=2)
    out = d.to_dict()
    assert out["verdict"] == "PASS"
    assert out["interval"]["method"].startswith("bootstrap-unpaired")
