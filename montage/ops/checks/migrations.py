"""``migrations``: the Alembic upgrade/downgrade round trip passes on scratch databases.

Runs ``montage db check --backend B --out ...`` (the app's public CLI) for each backend: upgrade to
head, downgrade one revision at a time to base, upgrade again, compare the schema.  PASS only when
every requested backend reports a complete round trip; a backend that did not run is not a pass.
Evidence: ``migrations-<backend>.json`` (the record) and ``migrations-<backend>.log`` (the output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from montage.core.proc import run_logged
from montage.errors import ExitCode, ToolMissing
from montage.ops.checks import _controls as _c
from montage.ops.checks.base import (
    CheckContext,
    EvidenceError,
    Judgement,
    KindParams,
    NegativeControl,
    Verdict,
    error_judgement,
    present,
    read_json,
)

Backend = Literal["sqlite", "postgresql"]
ALL_BACKENDS: tuple[Backend, ...] = ("sqlite", "postgresql")


class Params(KindParams):
    backends: list[Backend] = Field(default_factory=lambda: list(ALL_BACKENDS), min_length=1)
    timeout_s: float = Field(600.0, gt=0)


def _names(backend: str) -> tuple[str, str]:
    return f"migrations-{backend}.json", f"migrations-{backend}.log"


def run(params: Params, ctx: CheckContext) -> Judgement:
    for backend in params.backends:
        record, log = _names(backend)
        done = run_logged(
            ["{python}", "-m", "montage", "db", "check", "--backend", backend, "--out", str(ctx.evidence_dir / record)],
            ctx.evidence_dir / log,
            ctx.repo_root,
            min(params.timeout_s, ctx.timeout_s),
            ctx.env,
        )
        if done.returncode == ExitCode.TOOL_MISSING:
            raise ToolMissing(f"migrations check on {backend}: {done.tail(3)}")
    return rejudge(params, ctx.evidence_dir)


def _judge_one(backend: str, evidence_dir: Path) -> tuple[bool | None, str, dict[str, Any] | None]:
    record_name, _ = _names(backend)
    try:
        data = read_json(evidence_dir / record_name)
    except EvidenceError as exc:
        return None, f"{backend}: no record ({exc})", None
    records = [r for r in data.get("backends", []) if isinstance(r, dict) and r.get("backend") == backend]
    if len(records) != 1:
        return None, f"{backend}: the record does not describe exactly one {backend} run", None
    record = records[0]
    steps = record.get("steps", [])
    path = " -> ".join(str(s.get("revision") or "base") for s in steps)
    if record.get("ok") is True:
        return True, f"{backend}: {path}, schema identical after the round trip", record
    why = record.get("error") or (
        "schema differs after the round trip" if record.get("schema_matches_after_round_trip") is False else path
    )
    return False, f"{backend}: round trip failed ({why})", record


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    expected = f"upgrade head -> downgrade to base -> upgrade head passes on {', '.join(params.backends)}"
    names = [n for b in params.backends for n in _names(b)]
    outcomes = [_judge_one(b, evidence_dir) for b in params.backends]
    value = {b: (o[2] or {}).get("steps") for b, o in zip(params.backends, outcomes, strict=True)}
    reason = "; ".join(o[1] for o in outcomes)
    evidence = present(evidence_dir, names)
    if any(o[0] is False for o in outcomes):
        return Judgement(verdict=Verdict.FAIL, value=value, expected=expected, reason=reason, evidence=evidence)
    if any(o[0] is None for o in outcomes):
        return error_judgement(expected, reason, evidence)
    return Judgement(verdict=Verdict.PASS, value=value, expected=expected, reason=reason, evidence=evidence)


CONTROLS = (NegativeControl("leaky-downgrade", "a revision whose downgrade leaves a table", _c.leaky_downgrade),)
