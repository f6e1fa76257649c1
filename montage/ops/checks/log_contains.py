"""``log_contains``: a log file holds a pattern between ``min_count`` and ``max_count`` times.

E.g. the startup log says ``Config source=settings_v2`` (min_count 1), or ``ImportError`` appears
0 times (max_count 0).  A missing log is FAIL, not PASS.  Evidence: ``log.json`` and the log copy
(its last ``MAX_KEEP_BYTES`` bytes).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from montage.ops.checks import _controls as _c
from montage.ops.checks.base import (
    CheckContext,
    EvidenceError,
    Judgement,
    KindParams,
    NegativeControl,
    Verdict,
    error_judgement,
    read_json,
)

MAX_KEEP_BYTES = 5 * 1024 * 1024


class Params(KindParams):
    path: str = Field(min_length=1, description="log file relative to the repository root")
    pattern: str = Field(min_length=1, description="regular expression, matched per line")
    min_count: int = Field(1, ge=0)
    max_count: int | None = Field(None, ge=0)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _range(self) -> Params:
        if self.max_count is not None and self.max_count < self.min_count:
            raise ValueError("max_count is below min_count")
        return self


def run(params: Params, ctx: CheckContext) -> Judgement:
    source = ctx.repo_root / params.path
    record: dict[str, object] = {"path": params.path, "exists": source.is_file()}
    if source.is_file():
        data = source.read_bytes()
        record["size"] = len(data)
        record["truncated"] = len(data) > MAX_KEEP_BYTES
        (ctx.evidence_dir / "log.txt").write_bytes(data[-MAX_KEEP_BYTES:])
    ctx.write_json("log.json", record)
    return rejudge(params, ctx.evidence_dir)


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    bounds = f">= {params.min_count}" + (f" and <= {params.max_count}" if params.max_count is not None else "")
    expected = f"lines matching /{params.pattern}/ in {params.path}: {bounds}"
    try:
        record = read_json(evidence_dir / "log.json")
    except EvidenceError as exc:
        return error_judgement(expected, str(exc), ["log.json"])
    if not record["exists"]:
        return Judgement(
            verdict=Verdict.FAIL,
            value=None,
            expected=expected,
            reason=f"{params.path} does not exist",
            evidence=["log.json"],
        )
    try:
        text = (evidence_dir / "log.txt").read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return error_judgement(expected, f"evidence log.txt unreadable: {exc}", ["log.json", "log.txt"])
    rx = re.compile(params.pattern)
    count = sum(1 for line in text.splitlines() if rx.search(line))
    ok = count >= params.min_count and (params.max_count is None or count <= params.max_count)
    note = " (only the log's tail was kept)" if record.get("truncated") else ""
    return Judgement(
        verdict=Verdict.PASS if ok else Verdict.FAIL,
        value={"count": count},
        expected=expected,
        reason=f"{count} matching line(s){note}",
        evidence=["log.json", "log.txt"],
    )


CONTROLS = (NegativeControl("empty-log", "the log lacks the expected lines", _c.empty_log, fast=True),)
