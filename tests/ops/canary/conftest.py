"""Fixtures of the canary tests: recorded canary_metrics.json documents built from seeded samples."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from montage.ops.canary.judge import SYNTHETIC_NOTE
from montage.ops.canary.traffic import READS as KINDS

MakeMetrics = Callable[..., dict[str, Any]]


def _side(latencies: list[float], statuses: list[int], import_errors: int | None, cpu: float | None,
          mem: float | None, jobs: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    scrape: dict[str, Any] = {"import_errors_by_module": {}}
    if import_errors is None:
        scrape = {"error": "ConnectError: connection refused"}
    else:
        scrape["import_errors_total"] = import_errors
        if import_errors:
            scrape["import_errors_by_module"] = {"resolve_mcp": float(import_errors)}
    return {
        "ref": "x",
        "commit": "0" * 40,
        "scrape_before": scrape,
        "scrape_after": scrape,
        "jobs": jobs,
        "resources": {"cpu_percent": cpu, "mem_percent": mem, "cpu_how": "test", "mem_how": "test"},
        "samples": {
            "kind": [KINDS[i % len(KINDS)] for i in range(len(statuses))],
            "status": statuses,
            "latency_s": latencies,
        },
    }


@pytest.fixture
def make_metrics() -> MakeMetrics:
    """``make_metrics(n=600, slowdown=1.0, errors=0, unanswered=0, import_errors=0, cpu=10, mem=1,
    aa=False, jobs=6, job_states=None, job_slowdown=1.0, tail=0.0, schema=3)``.

    Latencies are seeded log-normal samples (about 5 ms median); the candidate's are the baseline's
    pair-wise times ``slowdown`` with a little independent noise, plus ``tail`` seconds on every
    twentieth request (a tail-only regression).  Both sides rendered ``jobs`` jobs of about 3 s; the
    candidate's take ``job_slowdown`` times as long and end in ``job_states`` (default all succeeded).
    ``schema`` 2 documents are judged by the rule they were recorded with (the median of window p99s).
    """

    def make(n: int = 600, slowdown: float = 1.0, errors: int = 0, unanswered: int = 0,
             import_errors: int | None = 0, cpu: float | None = 10.0, mem: float | None = 1.0,
             seed: int = 1, aa: bool = False, jobs: int = 6, job_states: list[str] | None = None,
             job_slowdown: float = 1.0, tail: float = 0.0, schema: int = 3) -> dict[str, Any]:  # fmt: skip
        rng = random.Random(seed)
        base = [rng.lognormvariate(-5.3, 0.5) for _ in range(n)]
        cand = [b * slowdown * rng.uniform(0.97, 1.03) + (tail if i % 20 == 7 else 0.0) for i, b in enumerate(base)]
        bjobs = [{"id": f"b{k}", "state": "succeeded", "duration_s": 3.0 + 0.1 * k, "error": None} for k in range(jobs)]
        states = job_states or ["succeeded"] * jobs
        cjobs = [{"id": f"c{k}", "state": st, "error": None if st == "succeeded" else "renderer exited 1",
                  "duration_s": (3.0 + 0.1 * k) * job_slowdown * rng.uniform(0.97, 1.03) if st == "succeeded" else None}
                 for k, st in enumerate(states)]  # fmt: skip
        cstatus = [200] * n
        for i in range(errors):
            cstatus[i * 7 % n] = 500
        for i in range(unanswered):
            cstatus[(i * 11 + 3) % n] = 0
        return {
            "schema": schema,
            "source": "local",
            "synthetic": True,
            "note": SYNTHETIC_NOTE,
            "candidate_dirty": not aa,
            "comparison": {
                "baseline_commit": "a" * 40,
                "baseline_how": "test",
                "candidate_commit": "a" * 40,
                "same_tree": aa,
                "same_env": True,
                "aa": aa,
            },  # fmt: skip
            "sides": {
                "baseline": _side(base, [200] * n, 0, 10.0, 1.0, bjobs),
                "candidate": _side(cand, cstatus, import_errors, cpu, mem, cjobs),
            },
        }

    return make
