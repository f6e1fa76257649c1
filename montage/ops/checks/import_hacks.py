"""``import_hacks``: no ``sys.path`` edits and no ``site.addsitedir`` anywhere (AST, so comments and
strings do not count).

Forms found: ``sys.path.append/insert/extend/...``, ``sys.path += ...``, ``sys.path = ...``,
``sys.path[...] = ...``, ``import sys as s; s.path...``, ``from sys import path`` then any edit of
``path``, ``site.addsitedir`` and ``from site import addsitedir``.  The file list is
``git ls-files '*.py'`` (plus untracked, not ignored); the parse is shared with ``stub_scan``.
Evidence: ``import_hacks.json`` (every finding) and ``import_hacks.out`` (count, then file:line).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from montage.ops.astscan import shared_scan
from montage.ops.checks import _controls as _c
from montage.ops.checks._scanfilter import ScanScope
from montage.ops.checks.base import (
    CheckContext,
    EvidenceError,
    Judgement,
    NegativeControl,
    Verdict,
    error_judgement,
    read_json,
)

EVIDENCE = ["import_hacks.json", "import_hacks.out"]


class Params(ScanScope):
    max_count: int = Field(0, ge=0, description="findings allowed (the roadmap wants 0)")


def run(params: Params, ctx: CheckContext) -> Judgement:
    result = shared_scan(ctx.repo_root, ctx.shared)
    found = [f for f in result.hacks if params.selects(f.path)]
    errors = [f for f in result.errors if params.selects(f.path)]
    scanned = [p for p in result.files if params.selects(p)]
    ctx.write_json(
        "import_hacks.json",
        {
            "source": result.source,
            "files_scanned": len(scanned),
            "findings": [f.as_dict() for f in found],
            "parse_errors": [f.as_dict() for f in errors],
        },
    )
    ctx.write_text("import_hacks.out", f"count: {len(found)}\n" + "".join(f.render() + "\n" for f in [*found, *errors]))
    return rejudge(params, ctx.evidence_dir)


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    expected = f"<= {params.max_count} sys.path / site.addsitedir edits"
    try:
        data = read_json(evidence_dir / "import_hacks.json")
    except EvidenceError as exc:
        return error_judgement(expected, str(exc), EVIDENCE)
    findings = data["findings"]
    errors = data["parse_errors"]
    value = {"count": len(findings), "files_scanned": data["files_scanned"], "parse_errors": len(errors)}
    where = ", ".join(f"{f['path']}:{f['line']} {f['kind']}" for f in findings[:5])
    if len(findings) > params.max_count:
        return Judgement(
            verdict=Verdict.FAIL,
            value=value,
            expected=expected,
            reason=f"{len(findings)} found: {where}",
            evidence=EVIDENCE,
        )
    if errors:
        bad = ", ".join(f"{f['path']}:{f['line']}" for f in errors[:5])
        return Judgement(
            verdict=Verdict.INCONCLUSIVE,
            value=value,
            expected=expected,
            reason=f"{len(errors)} file(s) could not be parsed, so they were not scanned: {bad}",
            evidence=EVIDENCE,
        )
    if data["files_scanned"] == 0:
        return Judgement(
            verdict=Verdict.INCONCLUSIVE,
            value=value,
            expected=expected,
            reason="no Python files matched the scope",
            evidence=EVIDENCE,
        )
    return Judgement(
        verdict=Verdict.PASS,
        value=value,
        expected=expected,
        reason=f"{len(findings)} found in {data['files_scanned']} files",
        evidence=EVIDENCE,
    )


CONTROLS = (NegativeControl("sys-path-insert", "a module doing sys.path.insert", _c.import_hack, fast=True),)
