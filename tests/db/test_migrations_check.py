"""`montage db check` and the phase-5 `migrations` check kind (run + rejudge from evidence)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage.ops.checks import load_kind
from montage.ops.checks.base import CheckContext, Verdict

ROOT = Path(__file__).resolve().parents[2]


def _ctx(tmp_path: Path) -> CheckContext:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    return CheckContext(repo_root=ROOT, bundle_dir=tmp_path, evidence_dir=evidence, phase_id=5, check_id="migrations")


def test_migrations_kind_passes_on_sqlite_and_rejudges_identically(tmp_path: Path) -> None:
    kind = load_kind("migrations")
    params = kind.Params(backends=["sqlite"])
    ctx = _ctx(tmp_path)
    judgement = kind.run(params, ctx)
    assert judgement.verdict == Verdict.PASS, judgement.reason
    assert "0003 -> 0002 -> 0001 -> base -> 0003" in judgement.reason
    assert kind.rejudge(params, ctx.evidence_dir) == judgement


def test_migrations_kind_fails_on_a_broken_round_trip_and_errors_without_evidence(tmp_path: Path) -> None:
    kind = load_kind("migrations")
    params = kind.Params(backends=["sqlite"])
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    assert kind.rejudge(params, evidence).verdict == Verdict.ERROR  # nothing measured: never PASS
    record = {"backend": "sqlite", "ok": False, "error": "OperationalError: boom", "steps": []}
    (evidence / "migrations-sqlite.json").write_text(json.dumps({"backends": [record]}))
    judged = kind.rejudge(params, evidence)
    assert judged.verdict == Verdict.FAIL and "boom" in judged.reason


@pytest.mark.slow
@pytest.mark.postgres
def test_migrations_kind_on_postgresql(tmp_path: Path) -> None:
    from montage.db.pgtemp import find_bindir
    from montage.errors import ToolMissing
    from tests.conftest import missing_tool

    try:
        find_bindir()
    except ToolMissing as exc:
        missing_tool(str(exc))
    kind = load_kind("migrations")
    judgement = kind.run(kind.Params(backends=["postgresql"]), _ctx(tmp_path))
    assert judgement.verdict == Verdict.PASS, judgement.reason
