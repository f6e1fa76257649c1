"""Phase 5's replica canary (``database: postgres``): both sides on a real throwaway PostgreSQL primary
with a streaming hot standby, the candidate routing reads to the standby; the ``replica_routing`` SLO
needs evidence that the flag switched something (montage/ops/canary/pgsides.py, judge.py)."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from montage.core import git as core_git
from montage.db.pgtemp import find_bindir
from montage.errors import ExitCode, ToolMissing
from montage.ops.canary import cli, controls, pgsides
from montage.ops.canary.collect import masked, side_env
from montage.ops.canary.judge import judge
from montage.ops.checks import canary as kind
from montage.ops.checks.base import CheckContext, ControlNotApplicable, Verdict
from tests.conftest import missing_tool

from .conftest import MakeMetrics

REPO = Path(__file__).resolve().parents[3]
FAST = {"requests": 300, "jobs": 3, "max_duration_s": 25, "drain_s": 40, "min_samples": 100}
ROUTED = {"MONTAGE_REPLICA__URL": "{pg_standby}", "MONTAGE_REPLICA__READ_FRACTION": "0.05"}
REPLICA = kind.Params(baseline_code="candidate", database="postgres", candidate_env=ROUTED,
                      evidence_name="canary_replica", **FAST)  # fmt: skip
SLOS = kind.Params(resamples=500)


# --- placeholders, masking, parameters ---------------------------------------------------------------


def test_placeholders_expand_to_each_sides_own_database(tmp_path: Path) -> None:
    dbs = {s: pgsides.SideDatabase(f"t_{s}", f"postgresql+asyncpg://montage@127.0.0.1:5001/t_{s}",
                                   f"postgresql+asyncpg://montage@127.0.0.1:5002/t_{s}")
           for s in ("baseline", "candidate")}  # fmt: skip
    envs = {
        s: side_env(
            tmp_path,
            tmp_path / s,
            1,
            pgsides.expand({"A": "{pg_standby}", "B": "x{pg_primary}y"}, db),
            db_url=db.primary,
        )  # fmt: skip
        for s, db in dbs.items()
    }
    for s, env in envs.items():
        assert env["MONTAGE_DB__URL"] == env["DATABASE_URL"] == f"postgresql+asyncpg://montage@127.0.0.1:5001/t_{s}"
        assert env["A"] == f"postgresql+asyncpg://montage@127.0.0.1:5002/t_{s}"
        assert env["B"] == f"xpostgresql+asyncpg://montage@127.0.0.1:5001/t_{s}y"
    # without a database (sqlite) nothing is expanded and the side keeps its SQLite file
    plain = side_env(tmp_path, tmp_path / "w", 1, pgsides.expand({"A": "1"}, None))
    assert plain["MONTAGE_DB__URL"] == f"sqlite+aiosqlite:///{tmp_path / 'w' / 'montage.db'}"


def test_url_passwords_and_secret_names_are_masked_in_the_record() -> None:
    env = {
        "MONTAGE_REPLICA__URL": "postgresql+asyncpg://app:s3cr3t@db.example:5432/montage",
        "DATABASE_URL": "postgresql+asyncpg://app@db.example/montage",  # no password: unchanged
        "ANTHROPIC_API_KEY": "sk-123",
    }
    shown = masked(env)
    assert shown["MONTAGE_REPLICA__URL"] == "postgresql+asyncpg://app:***@db.example:5432/montage"
    assert shown["DATABASE_URL"] == env["DATABASE_URL"]
    assert shown["ANTHROPIC_API_KEY"] == "***"
    assert "s3cr3t" not in json.dumps(shown)


def test_a_placeholder_needs_database_postgres_and_a_known_name() -> None:
    with pytest.raises(ValidationError, match=r"candidate_env: \{pg_standby\} names the canary's PostgreSQL"):
        kind.Params(candidate_env={"MONTAGE_REPLICA__URL": "{pg_standby}"})
    with pytest.raises(ValidationError, match=r"baseline_env: unknown placeholder \{pg_replica\}"):
        kind.Params(database="postgres", baseline_env={"X": "{pg_replica}"})
    assert REPLICA.metrics_file == "canary_replica_metrics.json"
    assert REPLICA.out_file == "evaluate_canary_replica.out"
    assert kind.Params().metrics_file == kind.METRICS and kind.Params().out_file == kind.OUT


def test_cli_refuses_a_placeholder_on_sqlite(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["collect", "--repo", str(REPO), "--same-code", "--candidate-env", "R={pg_standby}"])
    assert code == ExitCode.USAGE
    assert "expected database: postgres" in capsys.readouterr().err


# --- no PostgreSQL: INCONCLUSIVE, never PASS, never SQLite -----------------------------------------------


def test_no_postgresql_binaries_is_inconclusive_naming_why(tmp_path: Path) -> None:
    empty = tmp_path / "no-pg-bin"
    empty.mkdir()
    params = REPLICA.model_copy(update={"pg_bindir": str(empty)})
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    ctx = CheckContext(repo_root=REPO, bundle_dir=tmp_path, evidence_dir=evidence, phase_id=5, check_id="r")
    judged = kind.run(params, ctx)
    assert judged.verdict is Verdict.INCONCLUSIVE
    assert f"not found in {empty} (initdb missing)" in judged.reason
    assert judged == kind.rejudge(params, evidence)
    assert sorted(judged.evidence) == ["canary_replica_metrics.json", "evaluate_canary_replica.out"]
    doc = json.loads((evidence / "canary_replica_metrics.json").read_text(encoding="utf-8"))
    assert doc["sides"] == {} and "initdb missing" in doc["database"]["error"]  # no side ran on SQLite instead
    out = (evidence / "evaluate_canary_replica.out").read_text(encoding="utf-8").splitlines()
    assert out[0] == "INCONCLUSIVE" and out[1].startswith("database: INCONCLUSIVE ")


def test_cli_collect_without_postgresql_exits_inconclusive(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "m.json"
    code = cli.main(["collect", "--repo", str(REPO), "--same-code", "--database", "postgres", "--pg-bindir",
                     str(empty), "--candidate-env", "MONTAGE_REPLICA__URL={pg_standby}", "-o", str(out)])  # fmt: skip
    assert code == ExitCode.INCONCLUSIVE
    assert cli.main(["evaluate", str(out)]) == ExitCode.INCONCLUSIVE


# --- the replica_routing SLO on recorded documents ----------------------------------------------------


def _routed(m: dict[str, Any], side: str, *, replica: int, fallbacks: int, routing: bool = True,
            expected: bool = True) -> None:  # fmt: skip
    """Give a recorded document's side replica routing and window counts (as collect records them)."""
    doc = m["sides"][side]
    value = "**********" if routing else ""
    doc["config"] = {"settings": {"replica.url": {"origin": "env", "value": value},
                                  "replica.read_fraction": {"origin": "env", "value": "0.05"}}}  # fmt: skip
    doc["scrape_before"] = {**doc["scrape_before"], "db_reads": {"primary": 10, "replica": 1},
                            "db_replica_fallbacks": 2}  # fmt: skip
    doc["scrape_after"] = {**doc["scrape_after"], "db_reads": {"primary": 210, "replica": 1 + replica},
                           "db_replica_fallbacks": 2 + fallbacks}  # fmt: skip
    doc["replica"] = {"expected": expected}


def _pg(m: dict[str, Any]) -> dict[str, Any]:
    m["database"] = {"backend": "postgresql", "how": pgsides.CLUSTER_HOW}
    for side in ("baseline", "candidate"):
        doc = m["sides"][side]
        doc["scrape_before"] = {**doc["scrape_before"], "db_reads": {"primary": 5}, "db_replica_fallbacks": 0}
        doc["scrape_after"] = {**doc["scrape_after"], "db_reads": {"primary": 205}, "db_replica_fallbacks": 0}
    return m


def _row(m: dict[str, Any]) -> tuple[Verdict, str]:
    found = {r.name: r for r in judge(m, SLOS).slos}["replica_routing"]
    return found.verdict, found.detail


def test_replica_reads_pass_and_both_sides_counts_are_shown(make_metrics: MakeMetrics) -> None:
    m = _pg(make_metrics())
    _routed(m, "candidate", replica=12, fallbacks=0)
    verdict, detail = _row(m)
    assert verdict is Verdict.PASS, detail
    result = judge(m, SLOS)
    assert result.verdict == "PASS"
    text = result.text(m)
    assert "candidate replica routing on (read_fraction 0.05): 200 primary reads, 12 replica reads, 0 fallbacks" in text
    assert "baseline primary only: 200 primary reads, 0 replica reads, 0 fallbacks" in text
    assert result.to_dict()["slos"]["replica_routing"]["value"]["candidate"]["replica_reads"] == 12


def test_routing_on_but_no_replica_read_is_not_pass(make_metrics: MakeMetrics) -> None:
    m = _pg(make_metrics())
    _routed(m, "candidate", replica=0, fallbacks=0)
    verdict, detail = _row(m)
    assert verdict is Verdict.INCONCLUSIVE and "0 reads served by the replica" in detail, detail
    assert judge(m, SLOS).verdict == "PARTIAL"  # the gate's INCONCLUSIVE: never PASS


def test_fallbacks_beyond_the_bound_fail(make_metrics: MakeMetrics) -> None:
    m = _pg(make_metrics())
    _routed(m, "candidate", replica=0, fallbacks=7)  # a dead replica: every routed read fell back
    verdict, detail = _row(m)
    assert verdict is Verdict.FAIL and "7 of 7 replica-routed reads fell back" in detail, detail
    within = _pg(make_metrics())
    _routed(within, "candidate", replica=100, fallbacks=2)  # 2 of 102: within 5 %
    assert _row(within)[0] is Verdict.PASS
    beyond = copy.deepcopy(within)
    beyond["sides"]["candidate"]["scrape_after"]["db_replica_fallbacks"] = 2 + 6  # 6 of 106
    assert _row(beyond)[0] is Verdict.FAIL


def test_handed_the_standby_but_not_routing_is_inconclusive(make_metrics: MakeMetrics) -> None:
    m = _pg(make_metrics())
    _routed(m, "candidate", replica=0, fallbacks=0, routing=False)  # e.g. a misspelt setting name
    verdict, detail = _row(m)
    assert verdict is Verdict.INCONCLUSIVE and "the flag switched nothing" in detail, detail


def test_baseline_problems_never_fail_the_candidate(make_metrics: MakeMetrics) -> None:
    m = _pg(make_metrics())
    _routed(m, "baseline", replica=0, fallbacks=9)
    _routed(m, "candidate", replica=5, fallbacks=0)
    verdict, detail = _row(m)
    assert verdict is Verdict.INCONCLUSIVE and detail.startswith("baseline: 9 of 9"), detail


def test_documents_without_a_database_record_judge_as_before(make_metrics: MakeMetrics) -> None:
    m = make_metrics()
    assert "replica_routing" not in {r.name for r in judge(m, SLOS).slos}
    assert "database:" not in judge(m, SLOS).text(m)
    pg = _pg(make_metrics())  # on PostgreSQL, but no side routes: no replica row, the database line only
    assert "replica_routing" not in {r.name for r in judge(pg, SLOS).slos}
    assert "baseline primary only: 200 primary reads" in judge(pg, SLOS).text(pg)


# --- the dead-replica control ----------------------------------------------------------------------------


def test_dead_replica_control_applies_only_where_the_candidate_is_handed_the_standby(tmp_path: Path) -> None:
    for params in (kind.Params(), kind.Params(database="postgres"), kind.Params(source="prometheus")):
        with pytest.raises(ControlNotApplicable):
            controls.apply(tmp_path, params, "dead-replica")
    assert not (tmp_path / controls.OVERLAY).exists()
    change = controls.apply(tmp_path, REPLICA, "dead-replica")
    assert change.startswith(f"{controls.OVERLAY}/sitecustomize.py")
    script = (tmp_path / controls.OVERLAY / "sitecustomize.py").read_text(encoding="utf-8")
    assert controls.DEAD_REPLICA_URL in script


def test_dead_replica_control_rewrites_only_a_configured_replica(tmp_path: Path) -> None:
    controls.apply(tmp_path, REPLICA, "dead-replica")
    probe = "import os; print(os.environ.get('MONTAGE_REPLICA__URL'), os.environ.get('REPLICA_DATABASE_URL'))"
    for env, expected in (({"MONTAGE_REPLICA__URL": "postgresql+asyncpg://x@h/d"}, f"{controls.DEAD_REPLICA_URL} None"),
                          ({}, "None None")):  # fmt: skip
        done = subprocess.run(["python3", "-c", probe], env={"PYTHONPATH": str(tmp_path / controls.OVERLAY), **env},
                              capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
        assert done.stdout.strip() == expected


# --- real sides on a real primary + hot standby ---------------------------------------------------------


def _clone(tmp_path: Path) -> Path:
    dest = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", "--local", "--no-hardlinks", str(REPO), str(dest)], check=True,
                   timeout=120, capture_output=True)  # fmt: skip
    return dest


def _refused(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _run(tmp_path: Path, control: str | None) -> tuple[dict[str, Any], str, Verdict]:
    try:
        find_bindir()
    except ToolMissing as exc:  # as tests/pg: fail under CI, skip elsewhere
        missing_tool(str(exc))
    repo = _clone(tmp_path)
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    with core_git.temporary_worktree(repo, "HEAD", prefix="montage-crep-") as worktree:
        if control is not None:
            controls.apply(worktree.path, REPLICA, control)
        ctx = CheckContext(repo_root=worktree.path, bundle_dir=tmp_path, evidence_dir=evidence, phase_id=5,
                           check_id="canary-replica")  # fmt: skip
        judged = kind.run(REPLICA, ctx)
    assert judged == kind.rejudge(REPLICA, evidence)
    metrics = json.loads((evidence / REPLICA.metrics_file).read_text(encoding="utf-8"))
    out = (evidence / REPLICA.out_file).read_text(encoding="utf-8")
    db = metrics["database"]
    assert db["backend"] == "postgresql" and db["server_version"]
    names = {s: db["sides"][s]["database"] for s in ("baseline", "candidate")}
    assert names["baseline"] != names["candidate"]  # a database each
    for s in ("baseline", "candidate"):
        assert metrics["sides"][s]["env"]["MONTAGE_DB__URL"].endswith(f"/{names[s]}")
        assert _refused(db["sides"][s]["pg_primary"]) and _refused(db["sides"][s]["pg_standby"])  # stopped
    cand = metrics["sides"]["candidate"]
    assert cand["env_overrides"]["MONTAGE_REPLICA__URL"] == "{pg_standby}"  # the template, as written
    assert "MONTAGE_REPLICA__URL" not in metrics["sides"]["baseline"]["env"]  # the primary only
    return metrics, out, judged.verdict


def _replica_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("replica_routing: "))


@pytest.mark.postgres
@pytest.mark.slow
def test_routing_on_reads_from_the_hot_standby(tmp_path: Path) -> None:
    metrics, out, verdict = _run(tmp_path, None)
    assert _replica_line(out).startswith("replica_routing: PASS "), out
    assert verdict in (Verdict.PASS, Verdict.INCONCLUSIVE), out  # small traffic: some SLOs may stay undecided
    assert "comparison: A/B: " in out and "environments differ" in out  # a flag canary, not A/A
    cand, base = metrics["sides"]["candidate"]["replica"], metrics["sides"]["baseline"]["replica"]
    assert cand["routing"] and cand["expected"] and cand["counts"]["replica_reads"] > 0, cand
    assert cand["counts"]["fallbacks"] == 0, cand
    assert not base["routing"] and base["counts"]["replica_reads"] == 0, base
    assert (
        metrics["sides"]["candidate"]["env"]["MONTAGE_REPLICA__URL"]
        == metrics["database"]["sides"]["candidate"]["pg_standby"]
    )
    assert "candidate replica routing on (read_fraction 0.05): " in out


@pytest.mark.postgres
@pytest.mark.slow
def test_dead_replica_control_does_not_pass(tmp_path: Path) -> None:
    metrics, out, verdict = _run(tmp_path, "dead-replica")
    assert verdict is Verdict.FAIL, out
    assert _replica_line(out).startswith("replica_routing: FAIL "), out
    counts = metrics["sides"]["candidate"]["replica"]["counts"]
    assert counts["replica_reads"] == 0 and counts["fallbacks"] > 0, counts
    assert 500 not in metrics["sides"]["candidate"]["samples"]["status"]  # the fallback kept serving
