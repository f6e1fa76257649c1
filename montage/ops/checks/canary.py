"""``canary``: serve the baseline and the candidate side by side, send both the same synthetic
traffic while both render the same real jobs, and judge the candidate against the SLO matrix
(ROADMAP.md "Phase 2 in detail").

Source ``prometheus``: ``query_range`` against ``PROM_PROM_URL`` (see
:mod:`montage.ops.canary.prometheus`), the sides told apart by ``baseline_selector`` /
``candidate_selector``.  Source ``local`` (the default): baseline = the deployed version, i.e. the commit of the
phase's last PASS run (latest/, runs/ or proofs/history.jsonl), else ``baseline_ref`` (then required; see
:mod:`montage.ops.canary.baseline`), checked out in a temporary git worktree; candidate = the working
tree.  ``baseline_env`` / ``candidate_env`` are applied to each side after the canary's own settings
(a flag canary: the same code under two configurations; see :mod:`montage.ops.canary.collect` for
the precedence).  Same tree and same environment is an A/A run: the output says so and the p99 SLO
is INCONCLUSIVE unless ``allow_aa``.  Evidence: ``canary_metrics.json`` (raw per-request samples,
jobs, per-side environment, configuration and ``/metrics`` scrapes) and ``evaluate_canary.out``
(first line PASS / PARTIAL / FAIL, then one line per SLO, then the comparison).  The judgement is
recomputed from ``canary_metrics.json`` alone (seeded), so ``phase verify`` reproduces it bit for
bit.  Gate verdict: PASS -> PASS, FAIL -> FAIL, PARTIAL -> INCONCLUSIVE (never PASS).  The load is
synthetic, generated on loopback, not production traffic.

``cross_check_prometheus`` (local source): a real Prometheus on loopback scrapes both sides during the
run and the same traffic window is judged again from its series (SLO ``sources_agree``, see
:mod:`montage.ops.canary.judge`); with no ``prometheus`` on PATH that SLO is INCONCLUSIVE, never
skipped.

``evidence_name`` names the two files (``{name}_metrics.json``, ``evaluate_{name}.out``; default
``canary``), so a phase can keep two canaries' documents in one bundle.

``database: postgres`` runs both sides against a throwaway PostgreSQL primary with a streaming hot
standby (:mod:`montage.ops.canary.pgsides`; server binaries from ``pg_bindir``, else
``$MONTAGE_TEST_PG_BIN``, else /usr/lib/postgresql/15/bin) instead of a SQLite file each.  Each side
gets its own database on the primary, which its ``montage serve`` migrates to head at start-up (as
it does a SQLite file), and ``baseline_env`` / ``candidate_env`` values may name that side's URLs:

* ``{pg_primary}``: the side's database on the primary (already its ``db.url``);
* ``{pg_standby}``: the same database on the read-only hot standby, e.g.
  ``MONTAGE_REPLICA__URL: "{pg_standby}"`` (legacy ``REPLICA_DATABASE_URL``) for replica routing.

Recorded: the expanded environment (URL passwords masked), the ``*_env`` templates, a ``database``
record (server version, each side's database and URLs) and per side a ``replica`` record (routing as
the side's configuration reports it, and the window's replica reads, primary reads and fallbacks from
its ``/metrics``), judged by the ``replica_routing`` SLO (see :mod:`montage.ops.canary.judge`): routing
on with 0 replica reads is INCONCLUSIVE, fallbacks beyond ``replica_fallback_share_max`` FAIL.  The
cluster is stopped and removed at the end, also on an error or an interrupt.  No binaries, or a
cluster that does not start: INCONCLUSIVE naming why, never PASS, never a fallback to SQLite.
A placeholder without ``database: postgres`` is a phase-file error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from montage.ops.canary import controls as _controls
from montage.ops.checks.base import (
    CheckContext,
    DecisionParams,
    EvidenceError,
    Judgement,
    NegativeControl,
    Verdict,
    error_judgement,
    present,
    read_json,
)

METRICS = "canary_metrics.json"
OUT = "evaluate_canary.out"


class Params(DecisionParams):
    """The canary's parameters: what to serve and send, and the SLO matrix it is judged against."""

    source: Literal["local", "prometheus"] = Field(
        "local", description="local: serve both sides on loopback; prometheus: query_range against PROM_PROM_URL"
    )
    baseline_selector: str = Field("", description="prometheus: label matchers of the baseline's series")
    candidate_selector: str = Field("", description="prometheus: label matchers of the candidate's series")
    prom_window_s: float = Field(7200.0, gt=0, le=30 * 86400, description="prometheus: the window read")
    prom_step_s: float = Field(60.0, gt=0, le=86400, description="prometheus: query step (one point per step)")
    prom_scrape_interval_s: float = Field(
        15.0, gt=0, le=3600, description="prometheus: the series' scrape interval (rate range max(step + it, 4 x it))"
    )
    prom_queries: dict[str, str] = Field(default_factory=dict, description="prometheus: PromQL templates by SLO")
    baseline_ref: str | None = Field(
        None, min_length=1, description="baseline when the phase has no PASS bundle (the deployed commit wins)"
    )
    baseline_env: dict[str, str] = Field(default_factory=dict, description="set for the baseline side, last")
    candidate_env: dict[str, str] = Field(default_factory=dict, description="set for the candidate side, last")
    baseline_code: Literal["deployed", "candidate"] = Field(
        "deployed", description="candidate: both sides serve the working tree (a flag canary on the same code)"
    )
    allow_aa: bool = Field(False, description="an A/A canary may decide the p99 SLO")
    cross_check_prometheus: bool = Field(
        False, description="local: a real Prometheus also scrapes both sides; the sources must not contradict"
    )
    requests: int = Field(6000, ge=1, le=100_000, description="requests sent to each side")
    jobs: int = Field(4, ge=0, le=100, description="real jobs (the tiny test clip) submitted to each side")
    workers: int = Field(1, ge=0, le=8, description="embedded workers per side")
    max_duration_s: float = Field(75.0, gt=0, le=3600, description="stop sending after this long")
    drain_s: float = Field(25.0, ge=0, le=600, description="then wait this long at most for the jobs")
    startup_timeout_s: float = Field(60.0, gt=0, le=600)
    window: int = Field(25, ge=10, le=10_000, description="request pairs per latency window")
    window_trim: float = Field(
        0.1, ge=0, lt=0.5, description="share of the window p99 log ratios cut from each end before their mean"
    )
    min_windows: int = Field(8, ge=3, description="fewer latency windows: INCONCLUSIVE")
    job_duration_ratio_max: float = Field(1.5, gt=0, description="median job run time candidate/baseline")
    min_jobs: int = Field(3, ge=1, description="fewer jobs rendered: the job SLOs are INCONCLUSIVE")
    p99_ratio_max: float = Field(1.20, gt=0, description="p99 latency candidate/baseline")
    error_rate_max: float = Field(0.01, gt=0, lt=1, description="5xx (and unanswered) share")
    cpu_percent_max: float = Field(80.0, gt=0, le=100)
    mem_percent_max: float = Field(85.0, gt=0, le=100)
    min_samples: int = Field(200, ge=3, description="fewer answered requests: INCONCLUSIVE")
    database: Literal["sqlite", "postgres"] = Field(
        "sqlite", description="postgres: both sides on a throwaway primary + hot standby, a database each"
    )
    pg_bindir: str | None = Field(None, min_length=1, description="postgres: the PostgreSQL server binaries")
    replica_fallback_share_max: float = Field(
        0.05, ge=0, lt=1, description="replica fallbacks / replica-routed reads of the candidate, at most"
    )
    evidence_name: str = Field(
        "canary", pattern=r"^[a-z][a-z0-9_]*$", description="evidence files {name}_metrics.json, evaluate_{name}.out"
    )

    @model_validator(mode="after")
    def _placeholders(self) -> Params:
        from montage.errors import UsageError
        from montage.ops.canary import pgsides

        for where, env in (("baseline_env", self.baseline_env), ("candidate_env", self.candidate_env)):
            try:
                pgsides.check_placeholders(env, where, self.database)
            except UsageError as exc:
                raise ValueError(str(exc)) from None
        return self

    @property
    def metrics_file(self) -> str:
        return f"{self.evidence_name}_metrics.json"

    @property
    def out_file(self) -> str:
        return f"evaluate_{self.evidence_name}.out"


def run(params: Params, ctx: CheckContext) -> Judgement:
    from montage.core.files import atomic_write_text
    from montage.ops.canary import baseline, pgsides
    from montage.ops.canary.collect import collect
    from montage.ops.canary.judge import SYNTHETIC_NOTE, judge

    if params.source == "prometheus":
        from montage.ops.canary import prometheus

        selectors = {"baseline": params.baseline_selector, "candidate": params.candidate_selector}
        metrics = prometheus.collect(selectors, window_s=params.prom_window_s, step_s=params.prom_step_s,
                                     templates=params.prom_queries,
                                     scrape_interval_s=params.prom_scrape_interval_s)  # fmt: skip
        ctx.write_json(params.metrics_file, metrics)
        atomic_write_text(ctx.evidence_dir / params.out_file, judge(metrics, params).text(metrics))
        return rejudge(params, ctx.evidence_dir)
    if params.baseline_code == "candidate":
        chosen = baseline.Baseline(None, "the candidate's own tree (baseline_code: candidate)")
    else:
        chosen = baseline.resolve(ctx.repo_root, phase_id=ctx.phase_id, explicit=None, fallback=params.baseline_ref)
    try:
        metrics = collect(ctx.repo_root, baseline_ref=chosen.ref, baseline_how=chosen.how, **collect_args(params))
    except pgsides.DatabaseUnavailable as exc:  # recorded, judged INCONCLUSIVE: never PASS, never SQLite
        metrics = pgsides.unavailable_document(str(exc), note=SYNTHETIC_NOTE)
    ctx.write_json(params.metrics_file, metrics)
    atomic_write_text(ctx.evidence_dir / params.out_file, judge(metrics, params).text(metrics))
    return rejudge(params, ctx.evidence_dir)


def collect_args(params: Params) -> dict[str, Any]:
    """The collect() keywords that come straight from the parameters."""
    names = ("baseline_env", "candidate_env", "requests", "jobs", "workers", "max_duration_s", "drain_s",
             "startup_timeout_s", "cross_check_prometheus", "database", "pg_bindir")  # fmt: skip
    return {n: getattr(params, n) for n in names}


def _expected(params: Params, *, jobs: bool) -> str:
    """The SLO line a judgement records; schema-1 documents (``jobs=False``) predate the job SLOs."""
    cross = ", and a real Prometheus's reading of the same run does not contradict"
    job_slos = f"job errors == 0, job duration ratio <= {params.job_duration_ratio_max:g}, " if jobs else ""
    replica = (
        f"; on a PostgreSQL primary + hot standby, replica routing evidenced (replica reads > 0, fallbacks <= "
        f"{params.replica_fallback_share_max:g} of replica-routed reads)"
        if params.database == "postgres"
        else ""
    )
    return (
        f"canary SLOs on synthetic local load: p99 ratio <= {params.p99_ratio_max:g}, "
        f"5xx < {params.error_rate_max:g}, ImportError == 0, {job_slos}CPU <= {params.cpu_percent_max:g} %, "
        f"MEM <= {params.mem_percent_max:g} %{replica}" + (cross if params.cross_check_prometheus else "")
    )


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    from montage.ops.canary.judge import judge

    expected = _expected(params, jobs=True)
    files = present(evidence_dir, [params.metrics_file, params.out_file])
    try:
        metrics = read_json(evidence_dir / params.metrics_file)
        if isinstance(metrics, dict) and int(metrics.get("schema", 1)) < 2:  # judged before job SLOs existed
            expected = _expected(params, jobs=False)
        result = judge(metrics, params)
    except EvidenceError as exc:
        return error_judgement(expected, str(exc), files)
    except (KeyError, TypeError, ValueError) as exc:
        return error_judgement(expected, f"{params.metrics_file} is malformed ({type(exc).__name__}: {exc})", files)
    # the canary's PARTIAL (some SLOs undecided) is INCONCLUSIVE for the gate: never PASS
    verdict = result.verdict if result.verdict in (Verdict.PASS, Verdict.FAIL) else Verdict.INCONCLUSIVE
    not_passed = [f"{r.name} {r.verdict.value}" for r in result.slos if r.verdict is not Verdict.PASS]
    reason = f"canary {result.verdict}" + (f": {', '.join(not_passed)}" if not_passed else ": every SLO met")
    if [r.name for r in result.slos] == ["database"]:  # nothing ran: say why (no PostgreSQL, or it did not start)
        reason = f"canary {result.verdict}: {result.slos[0].detail}"
    return Judgement(verdict=verdict, value=result.to_dict(), expected=expected, reason=reason, evidence=files)


# The controls change the candidate only (its PYTHONPATH overlay, see montage.ops.canary.controls), so they
# also fail a flag canary on the same code; the prometheus source has nothing to change (not applicable),
# and dead-replica applies only where the candidate is handed the standby (database: postgres).
CONTROLS: tuple[NegativeControl, ...] = (
    NegativeControl("slow", "a candidate slower on every request", _controls.control("slow")),
    NegativeControl("5xx", "a candidate answering 500 to 2 % of the requests", _controls.control("5xx")),
    NegativeControl(
        "broken-import", "a candidate whose lazily imported PyAV fails to import", _controls.control("broken-import")
    ),
    NegativeControl(
        "dead-replica",
        "a candidate whose read replica is a closed port (database: postgres with {pg_standby} only)",
        _controls.control("dead-replica"),
    ),
)
