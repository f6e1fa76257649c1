"""``file``: a file exists (and, for JSON, fields meet expectations).

The file is copied into the evidence (``copy/<name>``) so the judgement can be redone from the
bundle alone.  Evidence: ``file.json`` (path, existence, size, sha256) and the copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from montage.core.files import sha256_file
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

MAX_COPY_BYTES = 20 * 1024 * 1024
Scalar = str | int | float | bool | None


class FieldExpectation(KindParams):
    field: str = Field(min_length=1, description="dotted path into the JSON document, e.g. summary.verdict")
    equals: Scalar = None
    one_of: list[Scalar] | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _something(self) -> FieldExpectation:
        fields_set = self.model_fields_set & {"equals", "one_of", "min", "max"}
        if not fields_set:
            raise ValueError("give at least one of equals, one_of, min, max")
        return self

    def describe(self) -> str:
        parts = []
        if "equals" in self.model_fields_set:
            parts.append(f"== {self.equals!r}")
        if self.one_of is not None:
            parts.append(f"in {self.one_of!r}")
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return f"{self.field} " + " and ".join(parts)

    def holds(self, value: Any) -> bool:
        if "equals" in self.model_fields_set and value != self.equals:
            return False
        if self.one_of is not None and value not in self.one_of:
            return False
        if self.min is not None or self.max is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if self.min is not None and value < self.min:
                return False
            if self.max is not None and value > self.max:
                return False
        return True


class Params(KindParams):
    path: str = Field(min_length=1, description="file path relative to the repository root")
    json_fields: list[FieldExpectation] = Field(default_factory=list, alias="json")


def _lookup(data: Any, dotted: str) -> tuple[bool, Any]:
    node = data
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def run(params: Params, ctx: CheckContext) -> Judgement:
    source = ctx.repo_root / params.path
    record: dict[str, Any] = {"path": params.path, "exists": source.is_file()}
    if source.is_file():
        record["size"] = source.stat().st_size
        record["sha256"] = sha256_file(source)
        record["copied"] = record["size"] <= MAX_COPY_BYTES
        if record["copied"]:
            (ctx.evidence_dir / "copy").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, ctx.evidence_dir / "copy" / source.name)
    ctx.write_json("file.json", record)
    return rejudge(params, ctx.evidence_dir)


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    expected = f"{params.path} exists" + "".join(f"; {f.describe()}" for f in params.json_fields)
    try:
        record = read_json(evidence_dir / "file.json")
    except EvidenceError as exc:
        return error_judgement(expected, str(exc), ["file.json"])
    if not record["exists"]:
        return Judgement(
            verdict=Verdict.FAIL,
            value={"exists": False},
            expected=expected,
            reason=f"{params.path} does not exist",
            evidence=["file.json"],
        )
    name = Path(params.path).name
    evidence = ["file.json"] + ([f"copy/{name}"] if record.get("copied") else [])
    if not params.json_fields:
        return Judgement(
            verdict=Verdict.PASS,
            value={"exists": True, "size": record["size"]},
            expected=expected,
            reason=f"{params.path} exists ({record['size']} bytes)",
            evidence=evidence,
        )
    if not record.get("copied"):
        return Judgement(
            verdict=Verdict.INCONCLUSIVE,
            value={"exists": True, "size": record["size"]},
            expected=expected,
            reason=f"{params.path} is larger than {MAX_COPY_BYTES} bytes; its fields were not kept",
            evidence=evidence,
        )
    try:
        data = json.loads((evidence_dir / "copy" / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Judgement(
            verdict=Verdict.FAIL,
            value={"exists": True},
            expected=expected,
            reason=f"{params.path} is not readable JSON: {exc}",
            evidence=evidence,
        )
    values: dict[str, Any] = {}
    problems: list[str] = []
    for exp in params.json_fields:
        found, value = _lookup(data, exp.field)
        values[exp.field] = value
        if not found:
            problems.append(f"{exp.field} is missing")
        elif not exp.holds(value):
            problems.append(f"{exp.field} = {value!r}, expected {exp.describe()}")
    verdict = Verdict.FAIL if problems else Verdict.PASS
    reason = "; ".join(problems) if problems else f"{len(params.json_fields)} field expectation(s) hold"
    return Judgement(
        verdict=verdict, value={"exists": True, "fields": values}, expected=expected, reason=reason, evidence=evidence
    )


CONTROLS = (NegativeControl("missing", "the file is absent", _c.missing_file, fast=True),)
