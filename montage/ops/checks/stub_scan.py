"""``stub_scan``: functions whose body is only ``pass`` / ``...`` / ``raise NotImplementedError`` /
a docstring, and ``TODO`` / ``FIXME`` comments.

Exempt by construction: ``@overload`` and ``@abstractmethod`` functions and methods of
``Protocol`` / ``ABC`` classes.  Anything else is exempt only through the allow-list file, one
entry a line, each with a reason::

    montage/x.py::Plugin.on_event  # default hook: subclasses override it
    montage/y.py::TODO             # tracked in issue 12

(``path::qualname`` for a stub, ``path::TODO`` / ``path::FIXME`` for that file's markers.)
An entry without a reason makes the check ERROR.  The parse is shared with ``import_hacks``.
Evidence: ``stub_scan.json`` (every finding), ``allowlist.txt`` (the allow-list used) and
``stub_scan.out`` (``count: N`` then one finding a line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

EVIDENCE = ["stub_scan.json", "allowlist.txt", "stub_scan.out"]


class Params(ScanScope):
    allowlist: str | None = Field(None, description="allow-list file relative to the repository root")
    max_count: int = Field(0, ge=0, description="findings allowed after the allow-list (the roadmap wants 0)")


def parse_allowlist(text: str) -> tuple[dict[str, str], list[str]]:
    """``{path::name: reason}`` and the problems (entries without a reason)."""
    entries: dict[str, str] = {}
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, _, reason = stripped.partition("#")
        key, reason = key.strip(), reason.strip()
        if "::" not in key:
            problems.append(f"allow-list line {lineno}: {key!r} is not path::name")
        elif not reason:
            problems.append(f"allow-list line {lineno}: {key!r} has no reason (write '# why')")
        else:
            entries[key] = reason
    return entries, problems


def _allowed(finding: dict[str, Any], entries: dict[str, str]) -> bool:
    key = f"{finding['path']}::{finding['name'] if finding['kind'] == 'stub' else finding['kind']}"
    return key in entries


def run(params: Params, ctx: CheckContext) -> Judgement:
    result = shared_scan(ctx.repo_root, ctx.shared)
    found = [f for f in result.stubs if params.selects(f.path)]
    errors = [f for f in result.errors if params.selects(f.path)]
    allow_text = ""
    if params.allowlist is not None:
        allow_path = ctx.repo_root / params.allowlist
        allow_text = allow_path.read_text(encoding="utf-8") if allow_path.is_file() else ""
    ctx.write_text("allowlist.txt", allow_text)
    ctx.write_json(
        "stub_scan.json",
        {
            "source": result.source,
            "files_scanned": sum(1 for p in result.files if params.selects(p)),
            "allowlist_found": params.allowlist is None or (ctx.repo_root / params.allowlist).is_file(),
            "findings": [f.as_dict() for f in found],
            "parse_errors": [f.as_dict() for f in errors],
        },
    )
    entries, _ = parse_allowlist(allow_text)
    remaining = [f for f in found if not _allowed(f.as_dict(), entries)]
    ctx.write_text("stub_scan.out", f"count: {len(remaining)}\n" + "".join(f.render() + "\n" for f in remaining))
    return rejudge(params, ctx.evidence_dir)


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    expected = f"<= {params.max_count} stubs / TODO / FIXME after the allow-list"
    try:
        data = read_json(evidence_dir / "stub_scan.json")
        allow_text = (evidence_dir / "allowlist.txt").read_text(encoding="utf-8")
    except (EvidenceError, OSError) as exc:
        return error_judgement(expected, str(exc), EVIDENCE)
    if not data["allowlist_found"]:
        return error_judgement(expected, f"the allow-list {params.allowlist} does not exist", EVIDENCE)
    entries, problems = parse_allowlist(allow_text)
    remaining = [f for f in data["findings"] if not _allowed(f, entries)]
    value = {
        "count": len(remaining),
        "allowed": len(data["findings"]) - len(remaining),
        "files_scanned": data["files_scanned"],
        "parse_errors": len(data["parse_errors"]),
    }
    if problems:
        return Judgement(
            verdict=Verdict.ERROR, value=value, expected=expected, reason="; ".join(problems[:3]), evidence=EVIDENCE
        )
    if len(remaining) > params.max_count:
        where = ", ".join(
            f"{f['path']}:{f['line']} {f['name'] if f['kind'] == 'stub' else f['kind']}" for f in remaining[:5]
        )
        return Judgement(
            verdict=Verdict.FAIL,
            value=value,
            expected=expected,
            reason=f"{len(remaining)} found: {where}",
            evidence=EVIDENCE,
        )
    if data["parse_errors"] or data["files_scanned"] == 0:
        why = (
            f"{len(data['parse_errors'])} file(s) could not be parsed"
            if data["parse_errors"]
            else "no Python files matched the scope"
        )
        return Judgement(verdict=Verdict.INCONCLUSIVE, value=value, expected=expected, reason=why, evidence=EVIDENCE)
    return Judgement(
        verdict=Verdict.PASS,
        value=value,
        expected=expected,
        reason=f"{len(remaining)} found in {data['files_scanned']} files ({value['allowed']} allowed with reasons)",
        evidence=EVIDENCE,
    )


CONTROLS = (NegativeControl("stub", "a function that raises NotImplementedError", _c.stub, fast=True),)
