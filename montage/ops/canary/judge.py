"""Judge a canary from its stored raw samples (``canary_metrics.json``) against the SLO matrix.

SLOs (ROADMAP.md "Phase 2 in detail"; the canary kind's :class:`~montage.ops.checks.canary.Params`
are the SLO matrix and the decision config), all about the *candidate*:

``p99_latency``
    per-window p99 ratios: the paired plan is cut into windows of ``window`` request pairs; in each
    window we take each side's p99 over the pairs both sides answered and form the ratio
    p99(candidate) / p99(baseline), and judge the trimmed geometric mean of those ratios (the
    ``window_trim`` share cut from each end of the log ratios) by a seeded bootstrap over windows:
    PASS when the interval lies at or below ``p99_ratio_max``, FAIL when it lies wholly above, else
    INCONCLUSIVE.  Why windows: on a shared machine single requests are delayed by the scheduler
    (the baseline's own p99 over a whole run swung 7-14 ms), and one pooled p99 is decided by a
    handful of such requests (its interval was 0.3-0.7 wide on unchanged trees).  Why a ratio per
    window: the two sides' requests of one window are sent alternately, so they meet the same load,
    and the ratio cancels it (the median of each side's window p99s, the rule of schema 2 documents,
    threw that pairing away: its intervals were about twice as wide).  Why a trimmed mean and not a
    median: the trim drops the few windows a neighbour's burst spoiled, and the mean keeps the size
    of a tail regression that moves only part of the windows, which a median of the ratios shrinks
    (a +21 % pooled p99 from 5 % of requests held measured 1.24 by the trimmed mean, 1.25 by the
    median but with intervals up to 0.34 wide).  An A/A comparison (same tree, same environment) is
    INCONCLUSIVE ("no change to compare") unless ``allow_aa``.
``error_rate``
    5xx answers plus unanswered requests over all requests sent (pooled over request kinds),
    Wilson interval against ``error_rate_max`` (same three-way rule).
``import_errors``
    ``import_errors_total`` (summed over modules) from the candidate's ``/metrics`` after the
    traffic: exactly 0 passes, more fails; INCONCLUSIVE without liveness (the scrape failed or
    fewer than ``min_samples`` requests were answered): "0 because healthy" is not "0 because
    nothing was measured".
``job_errors``
    the candidate's jobs (the same real clip both sides render): a job that failed, or did not
    finish while the baseline's same job did, is an error.  FAIL when the candidate has an error
    the baseline did not have, PASS when every job succeeded and at least ``min_jobs`` ran,
    INCONCLUSIVE otherwise (too few jobs, or the baseline failed the same jobs: not the change).
``job_duration_ratio``
    median of the paired run-time ratios of jobs both sides rendered (seeded paired bootstrap
    against ``job_duration_ratio_max``; fewer than ``min_jobs`` pairs: INCONCLUSIVE).
``cpu`` / ``mem``
    the candidate's server process tree: CPU time over the traffic window as a percentage of the
    usable CPUs, and peak RSS as a percentage of the memory limit; at or below the bound passes.
``sources_agree`` (only in a document with ``prometheus_cross``: the canary's cross-check)
    the same run's traffic window judged again from a real Prometheus's series (the rules of the
    ``prometheus`` source) for p99, 5xx and ImportError.  PASS when Prometheus measured all three and
    no SLO is PASS by one source and FAIL by the other; INCONCLUSIVE when they contradict (one of the
    two measurements is wrong, and which one is not known) or Prometheus measured nothing (missing,
    failed to start, empty series).  Never FAIL: a disagreement says nothing against the candidate.
    Only this row counts: the Prometheus rows themselves are shown in its detail, not judged again
    (the SLO matrix's error rates are calibrated for one source).
``replica_routing`` (documents with a ``database`` record, when a side routes reads to a replica)
    evidence that replica routing switched something: from each side's ``/metrics`` scrapes, the reads
    served by the replica (``montage_db_reads{target="replica"}``) and the reads retried on the primary
    after a replica error (``montage_db_replica_fallbacks``) over the traffic window.  A side routes
    when its effective configuration has a ``replica.url`` and a ``read_fraction`` above 0, and is
    expected to when its ``*_env`` hands it ``{pg_standby}``.  FAIL when the candidate's fallbacks
    exceed ``replica_fallback_share_max`` of its replica-routed reads (replica + fallbacks: the
    replica it was given does not serve); INCONCLUSIVE when a side expected to route does not, when
    a routing side served 0 reads from the replica (the flag switched nothing measurable: an A/A test
    in disguise), or when the counters were not scraped; else PASS.  The baseline's counts are shown
    and can make the row INCONCLUSIVE, never FAIL (the SLOs are about the candidate).

A document whose PostgreSQL primary + standby could not be started (``database.error``) is
INCONCLUSIVE, naming why: nothing was measured.

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
        lines = [self.verdict, *(r.line() for r in self.slos)]
        if metrics.get("source") == "prometheus":
            lines.append(f"source: {_window_line(metrics)}")
            return "\n".join(lines) + "\n"
        database = metrics.get("database") or {}
        if database.get("error"):
            lines.append(f"database: {database['how']}: unavailable ({database['error']})")
            lines.append(f"load: none sent ({metrics.get('note', SYNTHETIC_NOTE)})")
            return "\n".join(lines) + "\n"
        sent = {s: len(metrics["sides"][s]["samples"]["status"]) for s in ("baseline", "candidate")}
        lines.append(comparison_line(metrics))
        if database:  # documents before the database record keep their old text
            lines.append(database_line(metrics))
        lines.append(f"load: {metrics.get('note', SYNTHETIC_NOTE)}; requests sent per side {sent}")
        cross = metrics.get("prometheus_cross")
        if cross is not None:
            lines.append(f"cross-check: {cross['error'] if 'error' in cross else _window_line(cross)}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "slos": {
                r.name: {"verdict": r.verdict.value, "value": r.value, "bound": r.bound, "detail": r.detail}
                for r in self.slos
            },
        }


def _window_line(metrics: dict[str, Any]) -> str:
    """Where a ``source: prometheus`` document's series came from: note, time range, step, rate range."""
    prom = metrics["prometheus"]
    # documents before the rate range (rate over [step]) have no range and keep their old line
    ranged = f", rate range {prom['range']} (scrape {prom['scrape_interval_s']:g} s)" if "range" in prom else ""
    return f"{metrics['note']}, {prom['start']} to {prom['end']} step {prom['step_s']:g} s{ranged}"


def comparison_line(metrics: dict[str, Any]) -> str:
    """``comparison: A/A ...`` or ``comparison: A/B ...``: what the two sides differ in."""
    comp = metrics.get("comparison")
    if not comp:
        return "comparison: unknown (a document without a comparison record)"
    base, cand = comp["baseline_commit"][:12], (comp["candidate_commit"] or "?")[:12]
    what = "A/A" if comp["aa"] else "A/B"
    tree = "same tree" if comp["same_tree"] else f"trees differ (candidate {cand}, dirty {metrics['candidate_dirty']})"
    env = "same environment" if comp["same_env"] else "environments differ (a flag canary)"
    return f"comparison: {what}: baseline {base} ({comp['baseline_how']}); {tree}; {env}"


def database_line(metrics: dict[str, Any]) -> str:
    """``database: ...``: what the sides ran against and each side's replica routing counts."""
    database = metrics["database"]
    parts = []
    for name in ("baseline", "candidate"):
        side = metrics["sides"][name]
        rec = replica_record(side, bool((side.get("replica") or {}).get("expected")))
        c = rec["counts"]
        counts = (
            "not scraped"
            if c is None
            else (f"{c['primary_reads']} primary reads, {c['replica_reads']} replica reads, {c['fallbacks']} fallbacks")
        )
        routing = f"replica routing on (read_fraction {rec['read_fraction']})" if rec["routing"] else "primary only"
        parts.append(f"{name} {routing}: {counts}")
    return f"database: {database['how']}; " + "; ".join(parts)


def is_aa(metrics: dict[str, Any]) -> bool:
    return bool((metrics.get("comparison") or {}).get("aa"))


def _answered(side: dict[str, Any]) -> int:
    return sum(1 for s in side["samples"]["status"] if s)


def judge(metrics: dict[str, Any], slos: Params) -> CanaryVerdict:
    """The verdict of a ``canary_metrics.json`` document (raises KeyError/TypeError on a bad one)."""
    if metrics.get("source") == "prometheus":
        return _overall(_prometheus(metrics, slos))
    database = metrics.get("database") or {}
    if database.get("error"):
        why = f"not measured: {database['error']}"
        return CanaryVerdict(Verdict.INCONCLUSIVE, [SloResult("database", Verdict.INCONCLUSIVE, None,
                                                              "a PostgreSQL primary + hot standby", why)])  # fmt: skip
    base, cand = metrics["sides"]["baseline"], metrics["sides"]["candidate"]
    schema = int(metrics.get("schema", 1))
    rule = _latency if schema >= 3 else _latency_window_medians_v2 if schema == 2 else _latency_pooled_v1
    latency = rule(base, cand, slos)
    if is_aa(metrics) and not slos.allow_aa:
        why = f"A/A: no change to compare (same tree, same environment); measured {latency.detail}"
        latency = SloResult(latency.name, Verdict.INCONCLUSIVE, latency.value, latency.bound, why)
    # Schema 1 documents (before the canary rendered jobs) have no jobs to judge: their verdict had no
    # job SLOs, so re-judging an old bundle must not turn it INCONCLUSIVE (or TAMPERED) for lack of them.
    jobs = _jobs(base, cand, slos) if schema >= 2 else []
    results = [latency, _errors(cand, slos), _imports(cand, slos), *jobs]
    results += [
        _gauge(cand, "cpu", "cpu_percent", slos.cpu_percent_max, slos),
        _gauge(cand, "mem", "mem_percent", slos.mem_percent_max, slos),
    ]
    if database and any(_routes(side) for side in (base, cand)):
        results.append(_replica(base, cand, slos))
    if "prometheus_cross" in metrics:
        results.append(_sources_agree(metrics["prometheus_cross"], results, slos))
    return _overall(results)


CROSS_SLOS = ("p99_latency_ratio", "error_rate_5xx", "import_errors")


def _sources_agree(cross: dict[str, Any], local_rows: list[SloResult], slos: Params) -> SloResult:
    """The ``sources_agree`` row: the local verdicts against the same window judged from Prometheus."""
    bound = "measured by both; no SLO PASS by one source and FAIL by the other"
    if "error" in cross:
        return SloResult("sources_agree", Verdict.INCONCLUSIVE, None, bound, f"not measured: {cross['error']}")
    local = {r.name: r for r in local_rows}
    prom = {r.name: r for r in _prometheus(cross, slos)}
    value: dict[str, Any] = {
        n: {"local": local[n].verdict.value, "prometheus": prom[n].verdict.value} for n in CROSS_SLOS
    }
    lv, pv = local["p99_latency_ratio"].value, prom["p99_latency_ratio"].value
    if lv is not None and pv is not None and lv["ratio"] > 0:
        value["p99_latency_ratio"].update(local_ratio=lv["ratio"], prometheus_ratio=pv["ratio"],
                                          gap=round(abs(pv["ratio"] - lv["ratio"]) / lv["ratio"], 4))  # fmt: skip
    detail = "; ".join(f"prometheus {n} {prom[n].verdict.value} {prom[n].value} ({prom[n].detail})" for n in CROSS_SLOS)
    contradict = [n for n in CROSS_SLOS if {local[n].verdict, prom[n].verdict} == {Verdict.PASS, Verdict.FAIL}]
    unmeasured = [n for n in CROSS_SLOS if prom[n].value is None]
    if contradict:
        why = ", ".join(f"{n} local {local[n].verdict.value} vs prometheus {prom[n].verdict.value}" for n in contradict)
        why = f"the sources contradict: {why}; {detail}"
        return SloResult("sources_agree", Verdict.INCONCLUSIVE, value, bound, why)
    if unmeasured:
        return SloResult("sources_agree", Verdict.INCONCLUSIVE, value, bound,
                         f"prometheus did not measure {', '.join(unmeasured)}; {detail}")  # fmt: skip
    return SloResult("sources_agree", Verdict.PASS, value, bound, detail)


def replica_counts(side: dict[str, Any]) -> dict[str, int] | None:
    """Reads served by the replica and by the primary, and replica fallbacks, over the traffic window
    (``/metrics`` after minus before); None when either scrape lacks the counters."""
    before, after = side.get("scrape_before") or {}, side.get("scrape_after") or {}
    if "db_reads" not in before or "db_reads" not in after:
        return None
    diff = {t: int(after["db_reads"].get(t, 0)) - int(before["db_reads"].get(t, 0)) for t in ("replica", "primary")}
    fallbacks = int(after.get("db_replica_fallbacks", 0)) - int(before.get("db_replica_fallbacks", 0))
    return {"replica_reads": diff["replica"], "primary_reads": diff["primary"], "fallbacks": fallbacks}


def replica_record(side: dict[str, Any], expected: bool) -> dict[str, Any]:
    """A side's replica routing as it reported it (``/v1/admin/config``) and its window counts."""
    settings = (side.get("config") or {}).get("settings") or {}
    url = str((settings.get("replica.url") or {}).get("value") or "")
    fraction = (settings.get("replica.read_fraction") or {}).get("value")
    try:
        share = float(fraction) if fraction is not None else 0.0
    except ValueError:
        share = 0.0
    return {"expected": expected, "routing": bool(url) and share > 0, "read_fraction": fraction,
            "counts": replica_counts(side)}  # fmt: skip


def _routes(side: dict[str, Any]) -> bool:
    rec = side.get("replica") or {}
    return bool(rec.get("expected") or rec.get("routing"))


def _replica_problem(name: str, side: dict[str, Any], slos: Params) -> tuple[Verdict, str] | None:
    """Why ``side`` gives no evidence of replica routing (FAIL / INCONCLUSIVE), or None."""
    rec = replica_record(side, bool((side.get("replica") or {}).get("expected")))
    counts = rec["counts"]
    if counts is None:
        return Verdict.INCONCLUSIVE, f"{name}: not measured (no montage_db_reads in its /metrics scrapes)"
    if rec["expected"] and not rec["routing"]:
        return Verdict.INCONCLUSIVE, (
            f"{name}: its env hands it {{pg_standby}} but its configuration routes no reads to a replica "
            f"(replica.url empty or read_fraction {rec['read_fraction']}): the flag switched nothing"
        )
    if not rec["routing"]:
        return None
    routed = counts["replica_reads"] + counts["fallbacks"]
    if counts["fallbacks"] and counts["fallbacks"] > slos.replica_fallback_share_max * routed:
        return Verdict.FAIL, (
            f"{name}: {counts['fallbacks']} of {routed} replica-routed reads fell back to the primary "
            f"(> {slos.replica_fallback_share_max:.0%}): the replica does not serve"
        )
    if counts["replica_reads"] == 0:
        return Verdict.INCONCLUSIVE, (
            f"{name}: routing on (read_fraction {rec['read_fraction']}) but 0 reads served by the replica: "
            "the comparison would be an A/A test in disguise"
        )
    return None


def _replica(base: dict[str, Any], cand: dict[str, Any], slos: Params) -> SloResult:
    value = {n: replica_counts(s) for n, s in (("baseline", base), ("candidate", cand))}
    bound = f"replica reads > 0, fallbacks <= {slos.replica_fallback_share_max:g} of replica-routed reads"
    found = [(n, p) for n, s in (("candidate", cand), ("baseline", base)) if (p := _replica_problem(n, s, slos))]
    # the baseline's problems never FAIL the candidate
    problems = [(Verdict.INCONCLUSIVE if n == "baseline" else v, why) for n, (v, why) in found]
    if any(v is Verdict.FAIL for v, _ in problems):
        return SloResult("replica_routing", Verdict.FAIL, value, bound, "; ".join(w for _, w in problems))
    if problems:
        return SloResult("replica_routing", Verdict.INCONCLUSIVE, value, bound, "; ".join(w for _, w in problems))
    shown = "; ".join(
        f"{n}: {c['replica_reads']} replica reads, {c['fallbacks']} fallbacks"
        for n, c in value.items()
        if c is not None and _routes(base if n == "baseline" else cand)
    )
    return SloResult("replica_routing", Verdict.PASS, value, bound, f"routing switched reads to the replica ({shown})")


def _overall(results: list[SloResult]) -> CanaryVerdict:
    verdicts = [r.verdict for r in results]
    overall = stats.combine(verdicts)
    if overall is Verdict.INCONCLUSIVE:
        decided = any(v is not Verdict.INCONCLUSIVE for v in verdicts)
        return CanaryVerdict(Verdict.PARTIAL if decided else Verdict.INCONCLUSIVE, results)
    return CanaryVerdict(overall, results)


def answered_pairs(base: dict[str, Any], cand: dict[str, Any]) -> list[tuple[float, float] | None]:
    """Per request sent, ``(candidate latency, baseline latency)`` when both sides answered it (a status and a
    positive latency), else None; the positions are kept so windows stay aligned with the traffic."""
    b, c = base["samples"], cand["samples"]
    return [
        (cl, bl) if cs and bs and cl > 0 and bl > 0 else None
        for cs, cl, bs, bl in zip(c["status"], c["latency_s"], b["status"], b["latency_s"], strict=True)
    ]


def windows(base: dict[str, Any], cand: dict[str, Any], size: int) -> tuple[list[float], list[float]]:
    """Per-window p99 of each side over the request pairs both answered (windows with fewer than half
    their pairs answered are left out)."""
    rows = answered_pairs(base, cand)
    wc: list[float] = []
    wb: list[float] = []
    for start in range(0, len(rows) - size + 1, size):
        pairs = [p for p in rows[start : start + size] if p is not None]
        if 2 * len(pairs) < size:
            continue
        wc.append(stats._quantile(sorted(p[0] for p in pairs), 0.99))
        wb.append(stats._quantile(sorted(p[1] for p in pairs), 0.99))
    return wc, wb


def _latency(base: dict[str, Any], cand: dict[str, Any], slos: Params) -> SloResult:
    wc, wb = windows(base, cand, slos.window)
    d = stats.judge_log_ratios(wc, wb, threshold=slos.p99_ratio_max, worse="higher", trim=slos.window_trim,
                               confidence=slos.confidence, resamples=slos.resamples, seed=slos.seed,
                               min_samples=slos.min_windows)  # fmt: skip
    detail = f"too few windows ({len(wc)}; need {slos.min_windows}) of {slos.window} request pairs"
    if d.interval is not None:
        detail = (
            f"{d.reason}; geometric mean ({slos.window_trim:.0%} trimmed at each end) over {len(wc)} windows of "
            f"{slos.window} request pairs of each window's p99 ratio; median window p99 candidate "
            f"{stats.median(wc) * 1000:.2f} ms, baseline {stats.median(wb) * 1000:.2f} ms"
        )
    return _p99_slo(d, slos, detail)


def _latency_window_medians_v2(base: dict[str, Any], cand: dict[str, Any], slos: Params) -> SloResult:
    """Schema 2's rule (the median of each side's window p99s, bootstrapped over windows), kept so the
    bundles recorded with it re-judge as recorded."""
    wc, wb = windows(base, cand, slos.window)
    d = stats.judge_ratio(wc, wb, threshold=slos.p99_ratio_max, worse="higher", paired=True,
                          confidence=slos.confidence, resamples=slos.resamples, seed=slos.seed,
                          min_samples=slos.min_windows)  # fmt: skip
    detail = d.reason.replace("samples", "windows", 1) + f" of {slos.window} request pairs"
    if d.interval is not None:
        detail = (
            f"{d.reason}; median over {len(wc)} windows of {slos.window} request pairs of each window's p99: "
            f"candidate {stats.median(wc) * 1000:.2f} ms, baseline {stats.median(wb) * 1000:.2f} ms"
        )
    return _p99_slo(d, slos, detail)


def _latency_pooled_v1(base: dict[str, Any], cand: dict[str, Any], slos: Params) -> SloResult:
    """Schema 1's rule (one pooled p99 over every request pair), kept so old bundles re-judge as recorded."""
    pairs = [p for p in answered_pairs(base, cand) if p is not None]
    cl, bl = [p[0] for p in pairs], [p[1] for p in pairs]
    d = stats.judge_ratio(cl, bl, threshold=slos.p99_ratio_max, worse="higher", paired=True,
                          confidence=slos.confidence, resamples=slos.resamples, seed=slos.seed,
                          min_samples=slos.min_samples, quantile=0.99)  # fmt: skip
    detail = d.reason
    if d.interval is not None:
        p99c = stats._quantile(sorted(cl), 0.99) * 1000
        p99b = stats._quantile(sorted(bl), 0.99) * 1000
        detail = f"{d.reason}; p99 candidate {p99c:.2f} ms, baseline {p99b:.2f} ms, {len(pairs)} pairs"
    return _p99_slo(d, slos, detail)


def _p99_slo(d: stats.Decision, slos: Params, detail: str) -> SloResult:
    """The p99 SLO's row from a ratio decision (both rules share it)."""
    iv = d.interval
    value = None if iv is None else {"ratio": round(iv.point, 4), "low": round(iv.low, 4), "high": round(iv.high, 4)}
    return SloResult("p99_latency_ratio", d.verdict, value, f"<= {slos.p99_ratio_max:g}", detail)


def _jobs(base: dict[str, Any], cand: dict[str, Any], slos: Params) -> list[SloResult]:
    bj, cj = base.get("jobs") or [], cand.get("jobs") or []
    done = ("succeeded", "failed", "cancelled")
    bad = []
    for k, job in enumerate(cj):
        other = bj[k]["state"] if k < len(bj) else "missing"
        if job["state"] in ("failed", "cancelled") or (job["state"] not in done and other in done):
            bad.append(k)
    base_bad = {k for k, job in enumerate(bj) if job["state"] in ("failed", "cancelled")}
    ok = sum(1 for j in cj if j["state"] == "succeeded")
    value = {"jobs": len(cj), "succeeded": ok, "errors": len(bad), "rate": round(len(bad) / len(cj), 4) if cj else None}
    errors_why = "; ".join(f"job {k}: {cj[k]['state']} {cj[k].get('error') or ''}".strip() for k in bad[:3])
    new = [k for k in bad if k not in base_bad]
    if new:
        why = f"{len(new)} job(s) failed on the candidate that the baseline rendered: {errors_why}"
        err = SloResult("job_errors", Verdict.FAIL, value, "== 0 (beyond the baseline's)", why)
    elif ok >= slos.min_jobs and ok == len(cj):
        err = SloResult("job_errors", Verdict.PASS, value, "== 0", f"all {ok} jobs rendered")
    else:
        why = f"baseline failed the same jobs ({errors_why})" if bad else f"{ok} of {len(cj)} jobs finished"
        err = SloResult("job_errors", Verdict.INCONCLUSIVE, value, "== 0", f"{why}; need {slos.min_jobs}")
    pairs = [
        (c["duration_s"], b["duration_s"])
        for c, b in zip(cj, bj, strict=False)
        if c["state"] == b["state"] == "succeeded" and c["duration_s"] and b["duration_s"]
    ]
    d = stats.judge_ratio([p[0] for p in pairs], [p[1] for p in pairs], threshold=slos.job_duration_ratio_max,
                          worse="higher", paired=True, confidence=slos.confidence, resamples=slos.resamples,
                          seed=slos.seed, min_samples=slos.min_jobs)  # fmt: skip
    dvalue = None
    if d.interval is not None:
        dvalue = {
            "ratio": round(d.interval.point, 4),
            "low": round(d.interval.low, 4),
            "high": round(d.interval.high, 4),
        }
    dur = SloResult("job_duration_ratio", d.verdict, dvalue, f"<= {slos.job_duration_ratio_max:g}",
                    f"{d.reason}; {len(pairs)} jobs rendered by both sides")  # fmt: skip
    return [err, dur]


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


def _prometheus(metrics: dict[str, Any], slos: Params) -> list[SloResult]:
    """The SLOs the prometheus source measures, from the stored series (see montage/ops/canary/prometheus.py)."""
    from montage.ops.canary import prometheus as prom

    out: list[SloResult] = []
    pts, why = prom.side_points(metrics, "p99_latency")
    bound = f"<= {slos.p99_ratio_max:g}"
    if why:
        out.append(SloResult("p99_latency_ratio", Verdict.INCONCLUSIVE, None, bound, why))
    else:
        steps = sorted(set(pts["baseline"]) & set(pts["candidate"]))
        steps = [t for t in steps if pts["baseline"][t] > 0]
        new_rule = int(metrics.get("schema", 2)) >= 4  # the local source's rule: the steps are its windows
        if new_rule:  # a log ratio needs both p99s; a step p99 of 0 measured nothing there
            steps = [t for t in steps if pts["candidate"][t] > 0]
        c, b = [pts["candidate"][t] for t in steps], [pts["baseline"][t] for t in steps]
        if new_rule:
            d = stats.judge_log_ratios(c, b, threshold=slos.p99_ratio_max, worse="higher", trim=slos.window_trim,
                                       confidence=slos.confidence, resamples=slos.resamples, seed=slos.seed,
                                       min_samples=slos.min_windows)  # fmt: skip
            how = (f"geometric mean ({slos.window_trim:.0%} trimmed at each end) over {len(steps)} steps of each "
                   "step's p99 ratio")  # fmt: skip
        else:
            d = stats.judge_ratio(c, b, threshold=slos.p99_ratio_max, worse="higher", paired=True,
                                  confidence=slos.confidence, resamples=slos.resamples, seed=slos.seed,
                                  min_samples=slos.min_windows)  # fmt: skip
            how = f"median over {len(steps)} steps of each step's p99 series"
        value = None
        if d.interval is not None:
            value = {"ratio": round(d.interval.point, 4), "low": round(d.interval.low, 4),
                     "high": round(d.interval.high, 4)}  # fmt: skip
        out.append(SloResult("p99_latency_ratio", d.verdict, value, bound, f"{d.reason}; {how}"))
    req, why_r = prom.side_points(metrics, "requests")
    err, why_e = prom.side_points(metrics, "errors_5xx")
    bound = f"< {slos.error_rate_max:g} (upper {slos.confidence:.0%} Wilson bound)"
    answered = round(sum(req.get("candidate", {}).values()))
    if why_r or why_e:
        out.append(SloResult("error_rate_5xx", Verdict.INCONCLUSIVE, None, bound, str(why_r or why_e)))
    elif answered < slos.min_samples:
        out.append(SloResult("error_rate_5xx", Verdict.INCONCLUSIVE, None, bound,
                             f"too few requests ({answered}; need {slos.min_samples})"))  # fmt: skip
    else:
        bad = min(answered, round(sum(err["candidate"].values())))
        iv = stats.wilson_interval(bad, answered, confidence=slos.confidence)
        d = stats.decide(iv, threshold=slos.error_rate_max, worse="higher")
        value = {"rate": round(iv.point, 6), "low": round(iv.low, 6), "high": round(iv.high, 6)}
        out.append(SloResult("error_rate_5xx", d.verdict, value, bound,
                             f"{bad} of {answered} requests 5xx (pooled increases); {d.reason}"))  # fmt: skip
    imp, why_i = prom.side_points(metrics, "import_errors")
    if why_i or why_r:
        out.append(SloResult("import_errors", Verdict.INCONCLUSIVE, None, "== 0", str(why_i or why_r)))
    elif answered < slos.min_samples:
        out.append(SloResult("import_errors", Verdict.INCONCLUSIVE, None, "== 0",
                             f"no liveness: {answered} requests (need {slos.min_samples})"))  # fmt: skip
    else:
        count = round(max(imp["candidate"].values()))
        out.append(SloResult("import_errors", Verdict.PASS if count == 0 else Verdict.FAIL, count, "== 0",
                             f"liveness: {answered} requests answered"))  # fmt: skip
    if int(metrics.get("schema", 2)) >= 3:  # documents before these two SLOs keep their verdicts
        live = None if why_r else answered
        out.append(_prom_gauge(metrics, "cpu", "cpu_percent", slos.cpu_percent_max, live, slos, "mean"))
        out.append(_prom_gauge(metrics, "mem", "mem_percent", slos.mem_percent_max, live, slos, "peak"))
    return out


def _prom_gauge(metrics: dict[str, Any], name: str, slo: str, limit: float, answered: int | None, slos: Params,
                how: str) -> SloResult:  # fmt: skip
    """CPU (the mean of the candidate's per-step utilisation) or memory (its peak step) against the bound."""
    from montage.ops.canary import prometheus as prom

    bound = f"<= {limit:g} %"
    pts, why = prom.side_points(metrics, slo)
    if why:
        return SloResult(name, Verdict.INCONCLUSIVE, None, bound, why)
    if answered is None or answered < slos.min_samples:
        return SloResult(name, Verdict.INCONCLUSIVE, None, bound, f"no liveness: {answered} requests counted "
                         f"(need {slos.min_samples})")  # fmt: skip
    values = list(pts["candidate"].values())
    value = round(sum(values) / len(values) if how == "mean" else max(values), 3)
    verdict = Verdict.PASS if value <= limit else Verdict.FAIL
    what = "the server process (not its render children)"
    return SloResult(name, verdict, value, bound, f"{how} over {len(values)} steps of {what}")
