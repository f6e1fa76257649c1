"""The SLO judgement on recorded samples: deterministic, every SLO's PASS / FAIL / INCONCLUSIVE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage.ops.canary import cli
from montage.ops.canary.judge import judge
from montage.ops.checks import canary as kind
from montage.ops.checks.base import Verdict
from montage.ops.checks.canary import Params
from montage.ops.stats import Verdict as V

from .conftest import MakeMetrics

SLOS = Params(resamples=500)


def slo(metrics: dict[str, object], name: str) -> V:
    return {r.name: r.verdict for r in judge(metrics, SLOS).slos}[name]


def test_unchanged_candidate_passes_every_slo(make_metrics: MakeMetrics) -> None:
    m = make_metrics()
    result = judge(m, SLOS)
    assert result.verdict == "PASS", result.text(m)
    text = result.text(m)
    assert text.splitlines()[0] == "PASS"
    assert len(text.splitlines()) == 10  # verdict, seven SLOs, the comparison, the synthetic-load note
    assert "comparison: A/B: " in text
    assert "not production traffic" in text


def test_latency_fail_pass_inconclusive(make_metrics: MakeMetrics) -> None:
    assert slo(make_metrics(slowdown=1.6), "p99_latency_ratio") is V.FAIL
    assert slo(make_metrics(slowdown=0.9), "p99_latency_ratio") is V.PASS
    assert slo(make_metrics(slowdown=1.2), "p99_latency_ratio") is V.INCONCLUSIVE  # straddles the bound
    assert slo(make_metrics(n=50), "p99_latency_ratio") is V.INCONCLUSIVE  # too few samples


def test_error_rate_by_wilson_interval(make_metrics: MakeMetrics) -> None:
    assert slo(make_metrics(n=600, errors=0), "error_rate_5xx") is V.PASS  # upper bound 0.64 %
    assert slo(make_metrics(n=600, errors=30), "error_rate_5xx") is V.FAIL  # 5 %, lower bound > 1 %
    assert slo(make_metrics(n=600, errors=6), "error_rate_5xx") is V.INCONCLUSIVE  # 1 %: straddles
    assert slo(make_metrics(n=600, unanswered=30), "error_rate_5xx") is V.FAIL  # unanswered count too
    assert slo(make_metrics(n=100), "error_rate_5xx") is V.INCONCLUSIVE


def test_import_errors_exact_with_liveness(make_metrics: MakeMetrics) -> None:
    assert slo(make_metrics(import_errors=0), "import_errors") is V.PASS
    assert slo(make_metrics(import_errors=1), "import_errors") is V.FAIL
    assert slo(make_metrics(import_errors=None), "import_errors") is V.INCONCLUSIVE  # scrape failed
    # zero errors, but the candidate answered nothing: not measured, not healthy
    dead = make_metrics(unanswered=600)
    assert slo(dead, "import_errors") is V.INCONCLUSIVE
    assert slo(dead, "error_rate_5xx") is V.FAIL


def test_gauges_against_limits(make_metrics: MakeMetrics) -> None:
    assert slo(make_metrics(cpu=80.0, mem=85.0), "cpu") is V.PASS
    assert slo(make_metrics(cpu=80.5), "cpu") is V.FAIL
    assert slo(make_metrics(mem=90.0), "mem") is V.FAIL
    assert slo(make_metrics(cpu=None), "cpu") is V.INCONCLUSIVE
    assert slo(make_metrics(n=100), "mem") is V.INCONCLUSIVE


def test_overall_verdicts(make_metrics: MakeMetrics) -> None:
    assert judge(make_metrics(slowdown=1.2), SLOS).verdict == "PARTIAL"
    assert judge(make_metrics(import_errors=2), SLOS).verdict == "FAIL"
    assert judge(make_metrics(n=20, import_errors=None, cpu=None, mem=None, jobs=0), SLOS).verdict == "INCONCLUSIVE"


def test_rejudge_is_deterministic_and_maps_partial_to_inconclusive(make_metrics: MakeMetrics, tmp_path: Path) -> None:
    params = kind.Params(resamples=500)
    (tmp_path / kind.METRICS).write_text(json.dumps(make_metrics(slowdown=1.2)), encoding="utf-8")
    first = kind.rejudge(params, tmp_path)
    assert first == kind.rejudge(params, tmp_path)
    assert first.verdict is Verdict.INCONCLUSIVE
    assert "p99_latency_ratio INCONCLUSIVE" in first.reason
    (tmp_path / kind.METRICS).write_text(json.dumps(make_metrics()), encoding="utf-8")
    assert kind.rejudge(params, tmp_path).verdict is Verdict.PASS


def test_rejudge_of_missing_or_malformed_evidence_is_error(tmp_path: Path) -> None:
    params = kind.Params()
    assert kind.rejudge(params, tmp_path).verdict is Verdict.ERROR
    (tmp_path / kind.METRICS).write_text('{"sides": {}}', encoding="utf-8")
    judged = kind.rejudge(params, tmp_path)
    assert judged.verdict is Verdict.ERROR
    assert "malformed" in judged.reason


@pytest.mark.parametrize(
    ("overrides", "code"),
    [({}, 0), ({"slowdown": 1.2}, 4), ({"import_errors": 1}, 1),
     ({"n": 20, "import_errors": None, "cpu": None, "mem": None, "jobs": 0}, 3)],
)  # fmt: skip
def test_evaluate_exit_codes(
    make_metrics: MakeMetrics, tmp_path: Path, overrides: dict[str, object], code: int
) -> None:
    path = tmp_path / "canary_metrics.json"
    path.write_text(json.dumps(make_metrics(**overrides)), encoding="utf-8")
    out = tmp_path / "evaluate_canary.out"
    assert cli.main(["evaluate", str(path), "-o", str(out)]) == code
    first = out.read_text(encoding="utf-8").splitlines()[0]
    assert first == {0: "PASS", 4: "PARTIAL", 1: "FAIL", 3: "INCONCLUSIVE"}[code]


def test_evaluate_bad_input_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "m.json"
    bad.write_text("not json", encoding="utf-8")
    assert cli.main(["evaluate", str(bad), "-o", str(tmp_path / "o.out")]) == 2
    assert "not a readable canary_metrics.json" in capsys.readouterr().err
    assert not (tmp_path / "o.out").exists()


def test_bootstrap_ratio_of_a_quantile() -> None:
    from montage.ops import stats

    base = [float(i) for i in range(1, 201)]
    cand = [2.0 * x for x in base]
    median = stats.bootstrap_ratio(cand, base, paired=True, resamples=200, seed=3)
    assert median == stats.bootstrap_ratio(cand, base, paired=True, resamples=200, seed=3, quantile=0.5)
    assert "median-ratio" in median.method
    p99 = stats.bootstrap_ratio(cand, base, paired=True, resamples=200, seed=3, quantile=0.99)
    assert "p99-ratio" in p99.method
    assert p99.point == pytest.approx(2.0) and p99.low == pytest.approx(2.0) and p99.high == pytest.approx(2.0)
    with pytest.raises(ValueError, match="quantile"):
        stats.bootstrap_ratio(cand, base, quantile=1.0)


def test_aa_canary_says_so_and_leaves_p99_undecided(make_metrics: MakeMetrics) -> None:
    m = make_metrics(aa=True)
    result = judge(m, SLOS)
    text = result.text(m)
    assert "comparison: A/A: " in text
    latency = {r.name: r for r in result.slos}["p99_latency_ratio"]
    assert latency.verdict is V.INCONCLUSIVE and "no change to compare" in latency.detail
    assert result.verdict == "PARTIAL"
    # the phase may allow an A/A canary explicitly; a flag canary (same tree, other env) is not A/A
    assert slo(m, "p99_latency_ratio") is V.INCONCLUSIVE
    assert judge(m, Params(resamples=500, allow_aa=True)).verdict == "PASS"
    flag = make_metrics(aa=False)
    flag["comparison"].update(same_tree=True, same_env=False)
    assert judge(flag, SLOS).verdict == "PASS"
    assert "environments differ (a flag canary)" in judge(flag, SLOS).text(flag)


def test_tail_only_regression_fails_by_window_p99(make_metrics: MakeMetrics) -> None:
    # 5 % of the candidate's requests 15 ms slower (p99 about +55 %), the rest unchanged
    m = make_metrics(n=1000, tail=0.015)
    assert slo(m, "p99_latency_ratio") is V.FAIL
    assert slo(make_metrics(n=1000), "p99_latency_ratio") is V.PASS


def test_windows_ignore_a_burst_in_one_window(make_metrics: MakeMetrics) -> None:
    m = make_metrics(n=1000)
    lat = m["sides"]["candidate"]["samples"]["latency_s"]
    for i in range(100, 150):  # one window hit by a neighbour's burst: every request +50 ms
        lat[i] += 0.05
    assert slo(m, "p99_latency_ratio") is V.PASS


def test_job_errors_and_duration(make_metrics: MakeMetrics) -> None:
    assert slo(make_metrics(), "job_errors") is V.PASS
    failed = ["succeeded"] * 5 + ["failed"]
    assert slo(make_metrics(job_states=failed), "job_errors") is V.FAIL
    # a job still queued when the baseline's twin finished counts as an error too
    assert slo(make_metrics(job_states=["succeeded"] * 5 + ["queued"]), "job_errors") is V.FAIL
    assert slo(make_metrics(jobs=2), "job_errors") is V.INCONCLUSIVE  # too few jobs
    both = make_metrics(job_states=failed)
    both["sides"]["baseline"]["jobs"][5]["state"] = "failed"
    assert slo(both, "job_errors") is V.INCONCLUSIVE  # the baseline failed it too: not the change
    assert slo(make_metrics(), "job_duration_ratio") is V.PASS
    assert slo(make_metrics(job_slowdown=2.0), "job_duration_ratio") is V.FAIL
    assert slo(make_metrics(jobs=2), "job_duration_ratio") is V.INCONCLUSIVE


def test_p99_is_the_trimmed_geometric_mean_of_the_window_ratios(make_metrics: MakeMetrics) -> None:
    """Schema 3: each window's p99 ratio, 10 % of the log ratios cut from each end, the rest averaged."""
    import math

    from montage.ops.canary.judge import windows

    m = make_metrics(n=1000, slowdown=1.1)
    wc, wb = windows(m["sides"]["baseline"], m["sides"]["candidate"], SLOS.window)
    logs = sorted(math.log(c / b) for c, b in zip(wc, wb, strict=True))
    cut = len(logs) // 10
    expected = math.exp(sum(logs[cut : len(logs) - cut]) / (len(logs) - 2 * cut))
    latency = {r.name: r for r in judge(m, SLOS).slos}["p99_latency_ratio"]
    assert latency.value["ratio"] == round(expected, 4)
    assert latency.value["low"] < latency.value["ratio"] < latency.value["high"]
    assert f"geometric mean (10% trimmed at each end) over {len(wc)} windows" in latency.detail


def test_schema_2_documents_keep_the_median_rule_they_were_judged_by(make_metrics: MakeMetrics) -> None:
    """A bundle recorded before schema 3 re-judges as recorded: the median of each side's window p99s."""
    from montage.ops import stats
    from montage.ops.canary.judge import windows

    old = make_metrics(n=1000, tail=0.004, schema=2)
    latency = {r.name: r for r in judge(old, SLOS).slos}["p99_latency_ratio"]
    wc, wb = windows(old["sides"]["baseline"], old["sides"]["candidate"], SLOS.window)
    assert latency.value["ratio"] == round(stats.median(wc) / stats.median(wb), 4)
    assert "median over" in latency.detail
    new = {r.name: r for r in judge({**old, "schema": 3}, SLOS).slos}["p99_latency_ratio"]
    assert new.value != latency.value and "geometric mean" in new.detail


def test_a_tail_regression_in_a_third_of_the_windows_is_kept_by_the_mean(make_metrics: MakeMetrics) -> None:
    """The median of the window ratios ignores a regression that reaches fewer than half the windows;
    the trimmed mean keeps its size (here about 1.4 in a third of the windows: a geometric mean ~1.1+)."""
    m = make_metrics(n=1500)
    lat = m["sides"]["candidate"]["samples"]["latency_s"]
    for w in range(0, 60, 3):  # every third window of 25: its slowest request held +150 %
        block = range(w * 25, w * 25 + 25)
        slowest = max(block, key=lambda i: lat[i])
        lat[slowest] *= 2.5
    latency = {r.name: r for r in judge(m, SLOS).slos}["p99_latency_ratio"]
    assert latency.value["ratio"] > 1.1 and latency.value["low"] > 1.0
    old = {r.name: r for r in judge({**m, "schema": 2}, SLOS).slos}["p99_latency_ratio"]
    assert old.value["ratio"] < latency.value["ratio"]


def test_the_log_ratio_interval_covers_as_claimed() -> None:
    """Simulation: windows whose log p99 ratios are drawn from a known distribution (normal, and a
    heavy-tailed mixture a neighbour's bursts give); the 95 % bootstrap interval of the trimmed mean must
    cover the population's trimmed geometric mean in about 95 % of 120 runs (at least 88 %: a binomial
    lower bound far below 95 %), and must not be much wider than needed (it misses in some runs)."""
    import math
    import random

    from montage.ops import stats

    rng = random.Random(11)
    for draw in (
        lambda: rng.gauss(0.2, 0.15),
        lambda: rng.gauss(0.2, 0.1) + (rng.expovariate(3) if rng.random() < 0.1 else 0),
    ):
        population = sorted(draw() for _ in range(100_000))
        cut = len(population) // 10
        truth = math.exp(math.fsum(population[cut:-cut]) / (len(population) - 2 * cut))
        covered = 0
        for run in range(120):
            logs = [draw() for _ in range(80)]
            iv = stats.bootstrap_log_ratio([math.exp(x) for x in logs], [1.0] * 80, resamples=400, seed=run)
            covered += iv.low <= truth <= iv.high
        assert 0.88 * 120 <= covered <= 120 - 1, covered


def test_log_ratio_bad_input_is_refused() -> None:
    from montage.ops import stats

    with pytest.raises(ValueError, match="equal sample counts"):
        stats.bootstrap_log_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        stats.bootstrap_log_ratio([0.0, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="trim"):
        stats.trimmed_mean([1.0], 0.5)
    d = stats.judge_log_ratios([1.0, 1.1], [1.0, 1.0], threshold=1.2, worse="higher", min_samples=3)
    assert d.verdict is V.INCONCLUSIVE and "too few samples (2 pairs; need 3)" in d.reason
