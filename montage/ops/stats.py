"""Seeded statistics shared by the perf guard and the canary.

Everything here is stdlib-only and deterministic for a given seed, so a proof bundle that stores
the raw samples can be re-judged later and give the same verdict, bit for bit.

Public API
----------
``median(values)``
    The median (mean of the two middle values for an even count).
``bootstrap_ratio(candidate, baseline, *, paired=False, confidence=0.95, resamples=2000, seed=0)``
    Percentile-bootstrap confidence interval of ``median(candidate) / median(baseline)``.
    *Unpaired*: each side is resampled on its own (two independent sets of runs, e.g. a stored
    baseline against today's runs). *Paired*: the same indices are drawn for both sides, which keeps
    the pairing of interleaved A/B runs (run ``i`` of A and run ``i`` of B shared the same neighbour
    noise) and so gives a tighter interval when the noise is shared.
``wilson_interval(successes, trials, *, confidence=0.95)``
    Wilson score interval of a proportion (e.g. the 5xx rate of a canary from pooled counts).
``decide(interval, *, threshold, worse="lower")``
    Three-way verdict of an interval against a threshold: FAIL only when the whole interval lies
    beyond the threshold, PASS when the whole interval clears it, INCONCLUSIVE when it straddles it.
``judge_ratio(candidate, baseline, *, threshold, worse, ...)``
    ``bootstrap_ratio`` then ``decide``; INCONCLUSIVE (never PASS) when either side has fewer than
    ``min_samples`` samples.

``judge_log_ratios(candidate, baseline, *, threshold, worse, trim=0.1, ...)``
    The canary's p99 decision on paired windows: the trimmed geometric mean of the per-pair ratios
    ``candidate[i] / baseline[i]`` (the ``trim`` share of the log ratios cut from each end, then
    averaged), with a seeded percentile bootstrap over the pairs (:func:`bootstrap_log_ratio`),
    then ``decide``.  The pairing is kept (each ratio is formed inside its pair, so the load the two
    sides shared cancels), the trim drops the few pairs a neighbour's burst spoiled, and, unlike a
    median, the mean keeps the size of a regression that touches only part of the pairs.

``median_interval(values, *, confidence=0.95)``
    Distribution-free interval of the median of ``values`` from two order statistics (the sign-test
    interval). Its coverage is exact for any continuous distribution and is the one it reports
    (``Interval.confidence`` is the real coverage, at least the one asked for); too few values for
    that coverage: ``None``.
``judge_pairs(candidate, baseline, *, threshold, worse, ...)``
    The perf guard's decision on interleaved A/B pairs: the median of the per-pair ratios
    ``candidate[i] / baseline[i]`` with :func:`median_interval`, then ``decide``; optionally FAIL
    early when every pair ratio is far beyond the threshold (for a deterministic figure such as peak
    RSS, where three pairs that all agree are enough).

Example: fps must not drop by more than 10 %::

    d = judge_ratio(cand_fps, base_fps, threshold=0.90, worse="lower", paired=True, seed=7)
    d.verdict  # Verdict.PASS / FAIL / INCONCLUSIVE
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

from montage.ops.verdict import Verdict as Verdict  # the one verdict type (a decision is PASS / FAIL / INCONCLUSIVE)

Worse = Literal["lower", "higher"]

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_MIN_SAMPLES = 3


@dataclass(frozen=True)
class DecisionConfig:
    """How every statistical kind decides: interval confidence, bootstrap resamples, seed and the
    fewest samples per side below which the answer is INCONCLUSIVE.  The kinds' ``Params`` carry
    these four fields once (:class:`montage.ops.checks.base.DecisionParams`) and pass this along."""

    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    min_samples: int = DEFAULT_MIN_SAMPLES


@dataclass(frozen=True)
class Interval:
    """A confidence interval around a point estimate."""

    point: float
    low: float
    high: float
    confidence: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """A verdict with the interval and threshold it was decided on and a one-line reason."""

    verdict: Verdict
    interval: Interval | None
    threshold: float
    worse: Worse
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "interval": self.interval.to_dict() if self.interval else None,
            "threshold": self.threshold,
            "worse": self.worse,
            "reason": self.reason,
        }


def median(values: Sequence[float]) -> float:
    """The median of ``values``; raises ``ValueError`` when empty."""
    if not values:
        raise ValueError("median of an empty sequence")
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    if n % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted sequence (numpy's default method)."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _check_samples(name: str, values: Sequence[float]) -> None:
    if not values:
        raise ValueError(f"{name}: no samples")
    for v in values:
        if not math.isfinite(v):
            raise ValueError(f"{name}: non-finite sample {v!r}")


def bootstrap_ratio(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    paired: bool = False,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    quantile: float = 0.5,
) -> Interval:
    """Percentile-bootstrap interval of ``median(candidate) / median(baseline)``.

    ``quantile`` other than 0.5 bootstraps the ratio of that quantile instead (e.g. 0.99: the
    canary's p99 latency ratio; linear interpolation, numpy's default method).

    ``paired=True`` needs equal lengths and resamples index pairs. The baseline's median (and every
    resampled one) must be positive. Same inputs and seed: same interval, on every platform
    (``random.Random`` is specified to be reproducible for a seed).
    """
    _check_confidence(confidence)
    _check_samples("candidate", candidate)
    _check_samples("baseline", baseline)
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100, got {resamples}")
    if paired and len(candidate) != len(baseline):
        raise ValueError(f"paired bootstrap needs equal sample counts, got {len(candidate)} and {len(baseline)}")
    if min(baseline) <= 0:
        raise ValueError("baseline samples must be positive to form a ratio")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie strictly between 0 and 1, got {quantile!r}")

    def stat(values: Sequence[float]) -> float:
        return median(values) if quantile == 0.5 else _quantile(sorted(values), quantile)

    point = stat(candidate) / stat(baseline)
    rng = random.Random(seed)
    nc, nb = len(candidate), len(baseline)
    ratios: list[float] = []
    for _ in range(resamples):
        if paired:
            idx = [rng.randrange(nc) for _ in range(nc)]
            c = [candidate[i] for i in idx]
            b = [baseline[i] for i in idx]
        else:
            c = [candidate[rng.randrange(nc)] for _ in range(nc)]
            b = [baseline[rng.randrange(nb)] for _ in range(nb)]
        ratios.append(stat(c) / stat(b))
    ratios.sort()
    alpha = (1.0 - confidence) / 2.0
    name = "median" if quantile == 0.5 else f"p{quantile * 100:g}"
    return Interval(
        point=point,
        low=_quantile(ratios, alpha),
        high=_quantile(ratios, 1.0 - alpha),
        confidence=confidence,
        method=f"bootstrap-{'paired' if paired else 'unpaired'}-{name}-ratio(resamples={resamples},seed={seed})",
    )


def trimmed_mean(values: Sequence[float], trim: float) -> float:
    """Mean of ``values`` after cutting ``floor(trim * n)`` values from each end (``trim`` in [0, 0.5))."""
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must lie in [0, 0.5), got {trim!r}")
    if not values:
        raise ValueError("trimmed mean of an empty sequence")
    ordered = sorted(values)
    cut = int(trim * len(ordered))
    kept = ordered[cut : len(ordered) - cut]
    return math.fsum(kept) / len(kept)


def bootstrap_log_ratio(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    trim: float = 0.1,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval of ``exp(trimmed_mean(log(candidate[i] / baseline[i])))``.

    The pairs are resampled (so the pairing is kept) and each resample's trimmed mean of the log
    ratios is taken; the interval is that distribution's percentiles, exponentiated.  Every sample
    must be positive.  Same inputs and seed: same interval.
    """
    _check_confidence(confidence)
    _check_samples("candidate", candidate)
    _check_samples("baseline", baseline)
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100, got {resamples}")
    if len(candidate) != len(baseline):
        raise ValueError(f"paired ratios need equal sample counts, got {len(candidate)} and {len(baseline)}")
    if min(candidate) <= 0 or min(baseline) <= 0:
        raise ValueError("samples must be positive to form a log ratio")
    logs = [math.log(c / b) for c, b in zip(candidate, baseline, strict=True)]
    point = trimmed_mean(logs, trim)
    rng = random.Random(seed)
    n = len(logs)
    means = sorted(trimmed_mean([logs[rng.randrange(n)] for _ in range(n)], trim) for _ in range(resamples))
    alpha = (1.0 - confidence) / 2.0
    return Interval(
        point=math.exp(point),
        low=math.exp(_quantile(means, alpha)),
        high=math.exp(_quantile(means, 1.0 - alpha)),
        confidence=confidence,
        method=f"bootstrap-paired-trimmed{trim:g}-geomean-ratio(resamples={resamples},seed={seed})",
    )


def judge_log_ratios(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    threshold: float,
    worse: Worse,
    trim: float = 0.1,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> Decision:
    """:func:`bootstrap_log_ratio` then ``decide``; fewer than ``min_samples`` pairs is INCONCLUSIVE."""
    pairs = min(len(candidate), len(baseline))
    if pairs < min_samples:
        return Decision(Verdict.INCONCLUSIVE, None, threshold, worse,
                        f"too few samples ({pairs} pairs; need {min_samples})")  # fmt: skip
    interval = bootstrap_log_ratio(candidate, baseline, trim=trim, confidence=confidence, resamples=resamples,
                                   seed=seed)  # fmt: skip
    return decide(interval, threshold=threshold, worse=worse)


def wilson_interval(successes: int, trials: int, *, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Wilson score interval of the proportion ``successes / trials``."""
    _check_confidence(confidence)
    if trials <= 0:
        raise ValueError(f"trials must be positive, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in [0, {trials}], got {successes}")
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return Interval(
        point=p,
        # The interval is exactly [0, ...] at 0 successes and [..., 1] at all successes.
        low=0.0 if successes == 0 else max(0.0, centre - half),
        high=1.0 if successes == trials else min(1.0, centre + half),
        confidence=confidence,
        method="wilson",
    )


def decide(interval: Interval, *, threshold: float, worse: Worse = "lower") -> Decision:
    """Judge ``interval`` against ``threshold``.

    ``worse="lower"``: values below the threshold are bad (e.g. an fps ratio against 0.90).
    ``worse="higher"``: values above it are bad (e.g. an RSS ratio against 1.15, an error rate
    against 0.01). FAIL only when the whole interval is on the bad side, PASS when the whole
    interval is on the good side (touching the threshold counts as good), else INCONCLUSIVE.
    """
    lo, hi = interval.low, interval.high
    span = f"[{lo:.4f}, {hi:.4f}] (point {interval.point:.4f}, {interval.confidence:.0%} CI)"
    if worse == "lower":
        if hi < threshold:
            return Decision(Verdict.FAIL, interval, threshold, worse, f"{span} lies below {threshold:.4f}")
        if lo >= threshold:
            return Decision(Verdict.PASS, interval, threshold, worse, f"{span} clears {threshold:.4f}")
    elif worse == "higher":
        if lo > threshold:
            return Decision(Verdict.FAIL, interval, threshold, worse, f"{span} lies above {threshold:.4f}")
        if hi <= threshold:
            return Decision(Verdict.PASS, interval, threshold, worse, f"{span} clears {threshold:.4f}")
    else:
        raise ValueError(f"worse must be 'lower' or 'higher', got {worse!r}")
    return Decision(Verdict.INCONCLUSIVE, interval, threshold, worse, f"{span} straddles {threshold:.4f}")


def judge_ratio(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    threshold: float,
    worse: Worse,
    paired: bool = False,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    quantile: float = 0.5,
) -> Decision:
    """Bootstrap the ratio of medians and decide; too few samples on either side is INCONCLUSIVE."""
    if len(candidate) < min_samples or len(baseline) < min_samples:
        return Decision(
            Verdict.INCONCLUSIVE,
            None,
            threshold,
            worse,
            f"too few samples (candidate {len(candidate)}, baseline {len(baseline)}; need {min_samples} each)",
        )
    interval = bootstrap_ratio(
        candidate, baseline, paired=paired, confidence=confidence, resamples=resamples, seed=seed, quantile=quantile
    )
    return decide(interval, threshold=threshold, worse=worse)


def binomial_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (as a float of an exact fraction)."""
    if k < 0:
        return 0.0
    return float(sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2**n)


def median_interval(values: Sequence[float], *, confidence: float = DEFAULT_CONFIDENCE) -> Interval | None:
    """Order-statistic interval ``[x_(k), x_(n-k+1)]`` of the median (see the module docstring).

    ``k`` is the largest rank with ``P(Binomial(n, 1/2) <= k - 1) <= (1 - confidence) / 2``; the
    interval then covers the true median with probability ``1 - 2 P(B <= k - 1)`` (reported as
    ``confidence``). ``None`` when even ``[min, max]`` covers less than ``confidence`` (``n`` below
    6 for 95 %).
    """
    _check_confidence(confidence)
    _check_samples("values", values)
    n = len(values)
    alpha = (1.0 - confidence) / 2.0
    k = 0
    while k + 1 <= n // 2 and binomial_half_cdf(k, n) <= alpha:
        k += 1  # ranks 1..k on each side may be cut off
    if k == 0:
        return None
    ordered = sorted(values)
    coverage = 1.0 - 2.0 * binomial_half_cdf(k - 1, n)
    return Interval(
        point=median(ordered),
        low=float(ordered[k - 1]),
        high=float(ordered[n - k]),
        confidence=coverage,
        method=f"order-statistic-median(n={n},ranks={k}..{n - k + 1})",
    )


def min_count_for(confidence: float) -> int:
    """The fewest values whose ``[min, max]`` covers the median with at least ``confidence``."""
    _check_confidence(confidence)
    n = 1
    while 1.0 - 2.0 * 0.5**n < confidence:
        n += 1
    return n


def pair_ratios(candidate: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """``candidate[i] / baseline[i]`` for interleaved pairs (equal lengths, positive baseline)."""
    if len(candidate) != len(baseline):
        raise ValueError(f"pairs need equal sample counts, got {len(candidate)} and {len(baseline)}")
    _check_samples("candidate", candidate)
    _check_samples("baseline", baseline)
    if baseline and min(baseline) <= 0:
        raise ValueError("baseline samples must be positive to form a ratio")
    return [c / b for c, b in zip(candidate, baseline, strict=True)]


def judge_pairs(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    threshold: float,
    worse: Worse,
    confidence: float = DEFAULT_CONFIDENCE,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    early_margin: float | None = None,
) -> Decision:
    """Decide on the median of the per-pair ratios (see the module docstring).

    ``early_margin``: FAIL as soon as there are ``min_samples`` pairs and every pair ratio lies beyond
    the threshold by more than this much (e.g. 0.05: every RSS ratio above 1.20 for a 1.15 limit).
    Only for a deterministic figure: the reason says that the decision rests on every pair agreeing.
    """
    n = min(len(candidate), len(baseline))
    if n < min_samples:
        return Decision(Verdict.INCONCLUSIVE, None, threshold, worse, f"too few pairs ({n}; need {min_samples})")
    ratios = pair_ratios(candidate, baseline)
    if early_margin is not None:
        far = threshold + early_margin if worse == "higher" else threshold - early_margin
        beyond = all(r > far for r in ratios) if worse == "higher" else all(r < far for r in ratios)
        if beyond:
            lo, hi = min(ratios), max(ratios)
            span = 1.0 - 2.0 * 0.5**n
            everyone = Interval(median(ratios), lo, hi, span, f"all-pairs-beyond(n={n},margin={early_margin})")
            side = "above" if worse == "higher" else "below"
            return Decision(
                Verdict.FAIL,
                everyone,
                threshold,
                worse,
                f"every one of {n} pair ratios [{lo:.4f}, {hi:.4f}] lies {side} {far:.4f} "
                f"({threshold:.4f} {'+' if worse == 'higher' else '-'} margin {early_margin}): a deterministic "
                "figure far beyond its limit",
            )
    found = median_interval(ratios, confidence=confidence)
    if found is None:
        need = min_count_for(confidence)
        return Decision(
            Verdict.INCONCLUSIVE,
            None,
            threshold,
            worse,
            f"{n} pairs cannot give a {confidence:.0%} interval of the median pair ratio (need {need}); "
            f"ratios {min(ratios):.4f}..{max(ratios):.4f}",
        )
    return decide(found, threshold=threshold, worse=worse)


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """Overall verdict of several metrics: any FAIL fails, all PASS passes, else INCONCLUSIVE."""
    if not verdicts:
        return Verdict.INCONCLUSIVE
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if all(v is Verdict.PASS for v in verdicts):
        return Verdict.PASS
    return Verdict.INCONCLUSIVE
