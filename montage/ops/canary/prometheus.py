"""The canary's ``prometheus`` source: ``query_range`` against a fleet's Prometheus, raw series stored.

``PROM_PROM_URL`` (the Prometheus base URL) and ``PROM_TOKEN`` (sent as a bearer token when set) are
read from the environment.  Each SLO has a PromQL template with ``{selector}`` (the side's label
matchers, set by the phase file: e.g. ``track="baseline"``), ``{range}`` (the range of ``rate()``, see
below), ``{step_s}`` (the query step in seconds, a number) and ``{step}`` (the step as a duration: the
old rate window, still filled in for user templates); both sides' resolved queries,
the time range, the step, the scrape interval, the resolved range and the raw JSON answers are stored
in ``canary_metrics.json``, so the verdict is re-judged from the document alone, bit for bit.

The range.  ``{range}`` = max(step + scrape interval, 4 x scrape interval) (Grafana's
``$__rate_interval``; the scrape interval is the ``prom_scrape_interval_s`` param, 15 s by default as in
Prometheus).  A range equal to the step holds ``step / scrape`` samples, so the increase between the
last sample before a step boundary and the first one after it is in no step's window: Prometheus
guesses it by extrapolating the others (right only for a constant rate), and with a scrape interval
close to the step a window holds one sample and has no value at all.  With range = step + scrape
interval and regular scrapes, step k's window [t_k - step - scrape, t_k] holds exactly the scrape
intervals that end in (t_k - step, t_k]: consecutive steps partition the scrape intervals, every
increment is in exactly one step, and per-step p99s are read from disjoint requests (the paired
bootstrap over steps needs independent steps).

The per-step counts are ``sum(rate(x[{range}])) * <step seconds>``, not ``increase(x[{range}])``.  Both
extrapolate the window's raw increase (over the span between its first and last sample, here the step)
to the range, but ``rate`` then divides by the range: ``rate * step = raw * (range / span) * (step /
range) = raw * step / span``, i.e. the window's raw increase when the span is the step (step a multiple
of the scrape interval; otherwise off by the odd sample, both ways).  Summed over the steps that is the
counter's increase over the whole window: each request counted once, unbiased.  ``increase()`` over
the overlapping range is ``raw * range / step``: it counts the requests ``range / step`` times (1.25x
at 60 s steps and 15 s scrapes), which would make the pooled 5xx Wilson interval falsely narrow.  When
the 4 x scrape floor decides (steps under 3 scrape intervals) the windows overlap by more than one scrape
interval: each request is in ``range / step`` windows on average, each weighted ``step / range``, still
unbiased on average, but the per-step p99s then share requests (use steps of at least 3 scrapes).

Judged like the local source: p99 by a seeded paired bootstrap of the median of per-step ratios of
the two p99 series (steps present on both sides); 5xx by a Wilson interval on the pooled counts;
ImportError exactly 0 with liveness (requests answered).  An unreachable or erroring Prometheus (401,
500, a PromQL typo), an empty or partial series, NaN or a missing side make that SLO INCONCLUSIVE
with the reason, never PASS.  Documents written before ``{range}`` (``[{step}]`` windows, no
``scrape_interval_s``) are judged exactly as before: the judgement reads only the stored answers.

Cross-check (the local canary's ``cross_check_prometheus``): :func:`scraper` runs a real Prometheus
(``prometheus`` on PATH, the Debian package) on loopback that scrapes both local sides every
:data:`CROSS_SCRAPE_S`, labelled ``side="baseline"`` / ``side="candidate"``; after the traffic the
canary reads the traffic window back through :func:`collect` (steps of :data:`CROSS_STEP_S`) and
stores that document beside its own samples, so the same requests are judged by both sources.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from montage.core import loopback
from montage.errors import MontageError, UsageError

URL_VAR = "PROM_PROM_URL"
TOKEN_VAR = "PROM_TOKEN"
# Prometheus's own scrapes of /metrics are in the latency histogram (about 3 % of the requests at a 1 s
# scrape interval, and they decide a step's p99) but are no user's traffic: the defaults leave them out.
QUERIES: dict[str, str] = {
    "p99_latency": (
        "histogram_quantile(0.99, sum by (le) "
        '(rate(http_request_duration_seconds_bucket{{{selector},route!="/metrics"}}[{range}])))'
    ),
    "requests": 'sum(rate(http_request_duration_seconds_count{{{selector},route!="/metrics"}}[{range}])) * {step_s}',
    # no 5xx at all is no series at all: `or vector(0)` makes it 0 (liveness comes from "requests")
    "errors_5xx": (
        'sum(rate(http_request_duration_seconds_count{{{selector},route!="/metrics",status=~"5.."}}[{range}]))'
        " * {step_s} or vector(0)"
    ),
    "import_errors": "sum(import_errors_total{{{selector}}})",
    # the server process (prometheus_client's process collector: not its render children) against what the
    # service says it may use; summed over a side's replicas: their mean utilisation; memory: the worst one
    "cpu_percent": (
        "100 * sum(rate(process_cpu_seconds_total{{{selector}}}[{range}]))"
        " / sum(montage_cpu_usable_cores{{{selector}}})"
    ),
    "mem_percent": "100 * max(process_resident_memory_bytes{{{selector}}} / montage_memory_limit_bytes{{{selector}}})",
}  # fmt: skip
RESOURCE_SLOS = ("cpu_percent", "mem_percent")  # judged from schema-3 documents on (earlier ones had none)
DEFAULT_SCRAPE_INTERVAL_S = 15.0  # Prometheus's own default scrape_interval
PARTIAL_SHARE = 0.8  # fewer points than this share of the steps in the window: a partial series
CROSS_SCRAPE_S = 1.0  # the cross-check's own Prometheus scrapes each side every second
CROSS_STEP_S = 3.0  # 3 scrape intervals: consecutive steps' rate windows share no request (see above)
SIDE_LABEL = "side"  # the cross-check's target label: side="baseline" / side="candidate"


def duration(seconds: float) -> str:
    """A PromQL duration: ``5s`` for whole seconds, else milliseconds (PromQL has no ``4.5s``)."""
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def rate_range(step_s: float, scrape_interval_s: float) -> float:
    """The range of ``rate()``: one scrape interval beyond the step, at least 4 scrape intervals."""
    return max(step_s + scrape_interval_s, 4 * scrape_interval_s)


def resolve(template: str, selector: str, step_s: float, scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S) -> str:
    """A template with the side's selector, the step and the rate range filled in (a bad one is a usage error)."""
    try:
        return template.format(selector=selector, step=duration(step_s), step_s=f"{step_s:g}",
                               range=duration(rate_range(step_s, scrape_interval_s)))  # fmt: skip
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"PromQL template {template!r}: {type(exc).__name__}: {exc}; only {{selector}}, {{range}} (the rate "
            "range), {step} (the step as a duration) and {step_s} (the step in seconds, a number) are filled "
            "in (write other braces doubled)."
        ) from None


def query_range(base: str, token: str | None, query: str, start: float, end: float, step_s: float) -> dict[str, Any]:
    """Prometheus's JSON answer to ``/api/v1/query_range``, or ``{"error": ...}`` naming what failed."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
        resp = httpx.get(f"{base.rstrip('/')}/api/v1/query_range", headers=headers, timeout=30, params=params)
    except httpx.HTTPError as exc:
        return {"error": f"Prometheus at {base} unreachable: {type(exc).__name__}: {exc}"}
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        detail = body.get("error") if isinstance(body, dict) else resp.text[:200]
        return {"error": f"Prometheus answered HTTP {resp.status_code}: {detail}"}
    return {"data": body["data"]}


def collect(
    selectors: dict[str, str],
    *,
    window_s: float,
    step_s: float,
    end: float | None = None,
    templates: dict[str, str] | None = None,
    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S,
    url: str | None = None,
) -> dict[str, Any]:
    """Query both sides' series over the last ``window_s`` and return the ``canary_metrics.json`` document.

    ``url``: this Prometheus, without a token (the cross-check's own); else ``PROM_PROM_URL`` and
    ``PROM_TOKEN`` from the environment."""
    base = url or os.environ.get(URL_VAR, "")
    if not base:
        raise UsageError(f"the prometheus canary source needs {URL_VAR} (the Prometheus base URL) in the environment.")
    for side in ("baseline", "candidate"):
        if not selectors.get(side):
            raise UsageError(f"the prometheus canary source needs a non-empty {side}_selector (label matchers).")
    token = None if url else (os.environ.get(TOKEN_VAR) or None)
    until = time.time() if end is None else end
    start = until - window_s
    chosen = {**QUERIES, **(templates or {})}
    queries = {
        side: {slo: resolve(t, selectors[side], step_s, scrape_interval_s) for slo, t in chosen.items()}
        for side in selectors
    }
    series = {
        side: {slo: query_range(base, token, q, start, until, step_s) for slo, q in qs.items()}
        for side, qs in queries.items()
    }
    return {
        "schema": 4,  # 4: p99 judged by the local source's rule (judge._latency); 3 and 2 keep theirs
        "source": "prometheus",
        "synthetic": False,
        "note": f"series read from Prometheus at {base} (query_range)",
        "prometheus": {
            "url": base,
            "start": round(start, 3),
            "end": round(until, 3),
            "step_s": step_s,
            "scrape_interval_s": scrape_interval_s,
            "range": duration(rate_range(step_s, scrape_interval_s)),
            "token": "set" if token else "not set",
        },  # fmt: skip
        "queries": queries,
        "series": series,
    }


@contextlib.contextmanager
def scraper(targets: Mapping[str, str], work: Path, scrape_interval_s: float = CROSS_SCRAPE_S) -> Iterator[str]:
    """A real Prometheus on loopback scraping each ``{name: base URL}`` target (label ``side=<name>``)
    every ``scrape_interval_s``, its data under ``work``; yields its base URL and always stops it.

    Raises :class:`MontageError` naming the cause when ``prometheus`` is not on PATH or does not start."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise MontageError("prometheus is not on PATH (Debian package prometheus; scripts/run_tests.py installs it)")
    work.mkdir(parents=True, exist_ok=True)
    jobs = "".join(
        f"  - job_name: {name}\n    static_configs:\n      - targets: ['{base.removeprefix('http://')}']\n"
        f"        labels: {{{SIDE_LABEL}: {name}}}\n"
        for name, base in targets.items()
    )
    config = work / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: {duration(scrape_interval_s)}\nscrape_configs:\n{jobs}",
                      encoding="utf-8")  # fmt: skip
    port = loopback.free_port()
    try:
        server = loopback.start(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address={loopback.HOST}:{port}"],
            port=port, ready_path="/-/ready", log=work / "prometheus.log", timeout_s=60, grace_s=10,
            name="prometheus (the canary's cross-check)",
        )  # fmt: skip
    except loopback.NotReady as exc:
        raise MontageError(str(exc)) from None
    with server:
        yield server.base


def cross_selectors() -> dict[str, str]:
    """The cross-check's selectors: the side's target label, without Prometheus's own scrapes."""
    return {side: f'{SIDE_LABEL}="{side}",route!="/metrics"' for side in ("baseline", "candidate")}


def points(answer: dict[str, Any]) -> tuple[dict[float, float], str | None]:
    """{timestamp: value} of the one series in ``answer``, or the reason it cannot be used."""
    if "error" in answer:
        return {}, str(answer["error"])
    result = answer.get("data", {}).get("result", [])
    if not result:
        return {}, "empty series (no sample matched the selector)"
    if len(result) > 1:
        return {}, f"{len(result)} series where one was expected (aggregate the template)"
    out: dict[float, float] = {}
    for t, v in result[0]["values"]:
        value = float(v)
        if not math.isfinite(value):
            return {}, f"non-finite value {v} at {t}"
        out[float(t)] = value
    return out, None


def expected_points(metrics: dict[str, Any]) -> int:
    prom = metrics["prometheus"]
    return int((prom["end"] - prom["start"]) // prom["step_s"]) + 1


def side_points(metrics: dict[str, Any], slo: str) -> tuple[dict[str, dict[float, float]], str | None]:
    """Both sides' points of one SLO's series, or the first reason they cannot be judged."""
    out: dict[str, dict[float, float]] = {}
    need = math.ceil(PARTIAL_SHARE * expected_points(metrics))
    for side in ("baseline", "candidate"):
        answer = metrics["series"].get(side, {}).get(slo)
        if answer is None:
            return {}, f"no {side} series for {slo} (missing side)"
        pts, why = points(answer)
        if why:
            return {}, f"{side} {slo}: {why}"
        if slo != "import_errors" and len(pts) < need:
            return {}, f"{side} {slo}: partial series ({len(pts)} of {expected_points(metrics)} steps)"
        out[side] = pts
    return out, None
