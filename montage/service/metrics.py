"""Prometheus metrics on a per-app registry (never the global one, so several apps can coexist).

Request latency by route template and status, in-flight requests, jobs by state and their
durations (read from the database when /metrics is scraped, so jobs finished by worker processes
count), ``import_errors_total``, process CPU and memory, and statement counts per database target.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from montage.db.database import DbCounters
from montage.service.errors import CLIENT_CLOSED
from montage.service.imports import import_error_counts

# Request latency buckets 9 % apart (geometric) from 1 ms to about 5 s, then 10 s: a p99 read from the
# histogram (histogram_quantile interpolates inside one bucket) is off by at most 9 % where the
# service's p99 lies (a few ms to a few hundred ms), fine enough for the canary's 20 % p99 decision.
# The old 2-2.5x buckets could not tell 10 ms from 20 ms.  About 100 buckets per route/method/status.
LATENCY_BUCKET_FACTOR = 1.09
LATENCY_BUCKETS = (
    *(round(0.001 * LATENCY_BUCKET_FACTOR**k, 6) for k in range(100) if 0.001 * LATENCY_BUCKET_FACTOR**k <= 5.0),
    10.0,
)
MIB = 1024 * 1024
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass
class JobSnapshot:
    """Job figures read from the database at scrape time."""

    counts: dict[str, int] = field(default_factory=dict)
    durations: list[tuple[str, float]] = field(default_factory=list)
    job_import_errors: dict[str, int] = field(default_factory=dict)  # failed jobs' ImportErrors by module
    db_up: bool = False
    # memory admission (montage/runtime/admission.py) and this process's memory reading
    admitted: int = 0
    waiting: int = 0
    oom_killed: int = 0
    reserved_mb: dict[str, int] = field(default_factory=dict)
    memory: tuple[float, float, float] | None = None  # limit, working set, available (MiB)


class _AppCollector(Collector):
    def __init__(self, counters: DbCounters, snapshot: JobSnapshot) -> None:
        self._counters = counters
        self.snapshot = snapshot

    def collect(self) -> Iterable[Any]:
        imports = CounterMetricFamily("import_errors", "Failed imports (start-up probe, requests, jobs)",
                                      labels=["module"])  # fmt: skip
        counts = import_error_counts()
        for module, n in self.snapshot.job_import_errors.items():
            counts[module] = counts.get(module, 0) + n
        for module, n in sorted(counts.items()):
            imports.add_metric([module], n)
        if not counts:
            imports.add_metric([""], 0)
        yield imports

        reads = CounterMetricFamily("montage_db_reads", "Read statements per database target", labels=["target"])
        for target, n in sorted(self._counters.reads.items()):
            reads.add_metric([target], n)
        yield reads
        yield CounterMetricFamily(
            "montage_db_writes", "Write statements (always the primary)", value=self._counters.writes
        )
        yield CounterMetricFamily(
            "montage_db_replica_fallbacks", "Reads retried on the primary after a replica error",
            value=self._counters.replica_fallbacks,
        )  # fmt: skip

        snap = self.snapshot
        yield GaugeMetricFamily("montage_db_up", "1 when the last scrape could read the jobs database",
                                value=1.0 if snap.db_up else 0.0)  # fmt: skip
        by_state = GaugeMetricFamily("montage_jobs", "Jobs by state", labels=["state"])
        for state, n in sorted(snap.counts.items()):
            by_state.add_metric([state], n)
        yield by_state
        hist = HistogramMetricFamily("montage_job_duration_seconds", "Run time of finished jobs", labels=["state"])
        for state in sorted({s for s, _ in snap.durations}):
            values = [d for s, d in snap.durations if s == state]
            buckets = [(str(b), sum(1 for v in values if v <= b)) for b in JOB_BUCKETS]
            buckets.append(("+Inf", len(values)))
            hist.add_metric([state], buckets, sum(values))
        yield hist
        cpus, how = _usable_cpus()
        yield GaugeMetricFamily("montage_cpu_usable_cores", f"CPUs this process may use ({how}; read once)",
                                value=cpus)  # fmt: skip
        yield from _memory_families(snap)


@functools.cache
def _usable_cpus() -> tuple[float, str]:
    """Read once per process: a scrape must stay cheap, and a cgroup's CPU quota is set before it starts."""
    from montage.core.cgroup import usable_cpus

    return usable_cpus()


def _memory_families(snap: JobSnapshot) -> Iterable[Any]:
    from montage.runtime.reaper import reaped_total

    if snap.memory is not None:
        for name, value, what in zip(
            ("limit", "working_set", "available"),
            snap.memory,
            ("binding memory limit (cgroup, memory.limit_mb or host)", "working set (usage minus inactive file)",
             "limit minus working set"),
            strict=True,
        ):  # fmt: skip
            yield GaugeMetricFamily(f"montage_memory_{name}_bytes", f"This process's {what}", value=value * MIB)
    yield CounterMetricFamily("montage_jobs_admitted", "Jobs admitted by memory admission", value=snap.admitted)
    yield GaugeMetricFamily("montage_jobs_waiting_for_memory", "Queued jobs waiting for memory", value=snap.waiting)
    yield CounterMetricFamily("montage_jobs_oom_killed", "Jobs killed by their cgroup's OOM killer",
                              value=snap.oom_killed)  # fmt: skip
    reserved = GaugeMetricFamily("montage_memory_reserved_bytes", "Reserved by running jobs", labels=["machine"])
    for machine, mb in sorted(snap.reserved_mb.items()):
        reserved.add_metric([machine], mb * MIB)
    yield reserved
    yield CounterMetricFamily("montage_orphans_reaped", "Adopted orphans reaped by this process", value=reaped_total())


class ServiceMetrics:
    """The registry and instruments of one app."""

    def __init__(self, counters: DbCounters) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Request latency by route template, method and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("http_requests_in_flight", "Requests being served", registry=self.registry)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes
        self.collector = _AppCollector(counters, JobSnapshot())
        self.registry.register(self.collector)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: times every HTTP request and labels it with its route template."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()
        responded = disconnected = False

        async def receive_wrapper() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect" and not responded:
                disconnected = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = int(message["status"]), True
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            if disconnected and not responded:
                # The client hung up before any answer: 499, never the 500 default (a flaky client
                # must not inflate the 5xx ratio the canary judges).
                status = CLIENT_CLOSED
            self.metrics.in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.latency.labels(template, scope["method"], str(status)).observe(time.perf_counter() - started)
