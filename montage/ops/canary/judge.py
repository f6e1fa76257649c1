"""Judge a canary from its stored raw samples (``canary_metrics.json``) against the SLO matrix.

SLOs (ROADMAP.md "Phase 2 in detail"; the canary kind's :class:`~montage.ops.checks.canary.Params`
are the SLO matrix and the decision config), all about the *candidate*:

``p99_latency``
    seeded paired bootstrap interval of p99(candidate) / p99(baseline) over the request pairs both
    sides answered: PASS when the interval lies at or below ``p99_ratio_max``, FAIL when it lies
    wholly above, else INCONCLUSIVE.
``error_rate``
    5xx answers plus unanswered requests over all requests sent (pooled over request kinds),
    Wilson interval against ``error_rate_max`` (same three-way rule).
``import_errors``
    ``import_errors_total`` (summed over modules) from the candidate's ``/metrics`` after the
    traffic: exactly 0 passes, more fails; INCONCLUSIVE without liveness (the scrape failed or
    fewer than ``min_samples`` requests were answered): "0 because healthy" is not "0 because
    nothing was measured".
``cpu`` / ``mem``
    the candidate's server process tree: CPU time over the traffic window as a percentage of the
    usable CPUs, and peak RSS as a percentage of the memory limit; at or below the bound passes.

The overall verdict is PASS when every SLO passes, FAIL when any fails, INCONCLUSIVE when none
could be decided (nothing measured), else PARTIAL.  The same input and seed give the same result,
bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from montage.ops import stats
from montage.ops.checks.canary import Params
from montage.ops.verdict import Verdict

SYNTHETIC_NOTE = "synthetic load generated locally on loopback by the canary, not production traffic"


@dataclass(frozen=True)
class SloResult:
    name: str
    verdict: Verdict
    value: Any
    bound: str
    detail: str

    def line(self) -> str:
        return f"{self.name}: {self.verdict.value} measured {self.value} bound {self.bound} ({self.detail})"


@dataclass(frozen=True)
class CanaryVerdict:
    verdict: Verdict  # PASS / PARTIAL / FAIL / INCONCLUSIVE (no SLO decided)
    slos: list[SloResult]

    def text(self, metrics: dict[str, Any]) -> str:
        sent = {s: len(metrics["sides"][s]["samples"]["status"]) for s in ("baseline", "candidate")}
        lines = [self.verdict, *(r.line() for r in self.slos)]
        lines.append(f"load: {metrics.get('note', SYNTHETIC_NOTE)}; requests sent per side {sent}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "slos": {
                r.name: {"verdict": r.verdict.value, "value": r.value, "bound": r.bound, "detail": r.detail}
                for r in self.slos
            },
        }


def _answered(side: dict[str, Any]) -> int:
    return sum(1 for s in side["samples"]["status"] if s)


def judge(metrics: dict[str, Any], slos: Params) -> CanaryVerdict:
    """The verdict of a ``canary_metrics.json`` document (raises KeyError/TypeError on a bad one)."""
    base, cand = metrics["sides"]["baseline"], metrics["sides"]["candidate"]
    results = [_latency(base, cand, slos), _errors(cand, slos), _imports(cand, slos)]
    results += [
        _gauge(cand, "cpu", "cpu_percent", slos.cpu_percent_max, slos),
        _gauge(cand, "mem", "mem_percent", slos.mem_percent_max, slos),
    ]
    verdicts = [r.verdict for r in results]
    overall = stats.combine(verdicts)
    if overall is Verdict.INCONCLUSIVE:
        decided = any(v is not Verdict.INCONCLUSIVE for v in verdicts)
        return CanaryVerdict(Verdict.PARTIAL if decided else Verdict.INCONCLUSIVE, results)
    return CanaryVerdict(overall, results)


def _latency(base: dict[str, Any], cand: dict[str, Any], slos: Params) -> SloResult:
    b, c = base["samples"], cand["samples"]
    pairs = [
        (cl, bl)
        for cs, cl, bs, bl in zip(c["status"], c["latency_s"], b["status"], b["latency_s"], strict=True)
        if cs and bs and cl > 0 and bl > 0
    ]
    cl = [p[0] for p in pairs]
    bl = [p[1] for p in pairs]
    d = stats.judge_ratio(
        cl,
        bl,
        threshold=slos.p99_ratio_max,
        worse="higher",
        paired=True,
        confidence=slos.confidence,
        resamples=slos.resamples,
        seed=slos.seed,
        min_samples=slos.min_samples,
        quantile=0.99,
    )
    value: Any = None
    detail = d.reason
    if d.interval is not None:
        iv = d.interval
        value = {"ratio": round(iv.point, 4), "low": round(iv.low, 4), "high": round(iv.high, 4)}
        p99c = stats._quantile(sorted(cl), 0.99) * 1000
        p99b = stats._quantile(sorted(bl), 0.99) * 1000
        detail = f"{d.reason}; p99 candidate {p99c:.2f} ms, baseline {p99b:.2f} ms, {len(pairs)} pairs"
    return SloResult("p99_latency_ratio", d.verdict, value, f"<= {slos.p99_ratio_max:g}", detail)


def _errors(cand: dict[str, Any], slos: Params) -> SloResult:
    statuses = cand["samples"]["status"]
    bad = sum(1 for s in statuses if s == 0 or s >= 500)
    bound = f"< {slos.error_rate_max:g} (upper {slos.confidence:.0%} Wilson bound)"
    if len(statuses) < slos.min_samples:
        return SloResult(
            "error_rate_5xx",
            Verdict.INCONCLUSIVE,
            None,
            bound,
            f"too few requests ({len(statuses)}; need {slos.min_samples})",
        )
    iv = stats.wilson_interval(bad, len(statuses), confidence=slos.confidence)
    d = stats.decide(iv, threshold=slos.error_rate_max, worse="higher")
    value = {"rate": round(iv.point, 6), "low": round(iv.low, 6), "high": round(iv.high, 6)}
    return SloResult(
        "error_rate_5xx",
        d.verdict,
        value,
        bound,
        f"{bad} of {len(statuses)} requests 5xx or unanswered; {d.reason}",
    )


def _imports(cand: dict[str, Any], slos: Params) -> SloResult:
    answered = _answered(cand)
    scrape = cand.get("scrape_after") or {}
    count = scrape.get("import_errors_total")
    if count is None:
        return SloResult(
            "import_errors",
            Verdict.INCONCLUSIVE,
            None,
            "== 0",
            f"not measured: no import_errors_total in the candidate's /metrics ({scrape.get('error', 'missing')})",
        )
    if answered < slos.min_samples:
        return SloResult(
            "import_errors",
            Verdict.INCONCLUSIVE,
            count,
            "== 0",
            f"no liveness: the candidate answered {answered} requests (need {slos.min_samples})",
        )
    verdict = Verdict.PASS if count == 0 else Verdict.FAIL
    modules = scrape.get("import_errors_by_module") or {}
    return SloResult(
        "import_errors", verdict, count, "== 0", f"liveness: {answered} requests answered; by module {modules}"
    )


def _gauge(cand: dict[str, Any], name: str, key: str, limit: float, slos: Params) -> SloResult:
    res = cand.get("resources") or {}
    value = res.get(key)
    bound = f"<= {limit:g} %"
    if value is None or _answered(cand) < slos.min_samples:
        return SloResult(
            name,
            Verdict.INCONCLUSIVE,
            value,
            bound,
            f"not measured ({res.get('error', 'no samples')}) or too few requests answered",
        )
    verdict = Verdict.PASS if value <= limit else Verdict.FAIL
    return SloResult(name, verdict, value, bound, res.get(f"{name}_how", ""))
