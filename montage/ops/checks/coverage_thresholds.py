"""``coverage``: per-module thresholds by dotted name, a global floor and a ratchet.

By default the check measures: ``coverage run -m pytest ARGS`` (the project's coverage config
follows subprocesses), ``coverage combine``, ``coverage json``. With ``report:`` it judges an
existing report instead: coverage.py JSON, or Cobertura XML (``coverage xml``, ``.xml`` suffix). A
threshold on a module that does not exist (no ``a/b.py`` nor ``a/b/`` package) is INCONCLUSIVE,
never PASS; a module that exists but was never imported counts as 0 %. The ratchet requires ``global
>= baseline + plus_pp`` with the baseline read from ``coverage_base.json`` (``{"global": 61.5}``);
no baseline is INCONCLUSIVE.

Percentages follow coverage.py: (covered lines + covered branches) / (statements + branches).
Evidence: ``coverage.json`` (or ``coverage.xml``), ``modules.json`` (which files each module maps
to), ``coverage_base.json`` (when ratcheting), ``coverage_output.txt`` (when measuring).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field

from montage.core.proc import run_logged
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


class Ratchet(KindParams):
    baseline_file: str = Field("coverage_base.json", description="JSON with the baseline global percentage")
    plus_pp: float = Field(ge=0, le=100, description="required gain over the baseline, in percentage points")


class Params(KindParams):
    modules: dict[str, float] = Field(default_factory=dict, description="dotted module -> minimum percent")
    global_min: float | None = Field(None, ge=0, le=100, description="minimum total percent")
    ratchet: Ratchet | None = None
    report: str | None = Field(None, description="judge this coverage JSON instead of measuring")
    pytest_args: list[str] = Field(default_factory=lambda: ["-m", "not slow"])
    timeout_s: float = Field(3600, gt=0, le=86400)


def _module_files(repo_root: Path, dotted: str) -> list[str] | None:
    base = repo_root.joinpath(*dotted.split("."))
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py").relative_to(repo_root).as_posix()]
    if base.is_dir() and (base / "__init__.py").is_file():
        return sorted(p.relative_to(repo_root).as_posix() for p in base.rglob("*.py"))
    return None


def _measure(params: Params, ctx: CheckContext) -> bool:
    # coverage's data files live in a temporary directory, never beside the bundles: a run killed
    # before its cleanup leaves nothing in proofs/ (which is committed) or the working tree
    with tempfile.TemporaryDirectory(prefix=f"montage-coverage-{ctx.phase_id}-") as scratch:
        return _measure_into(params, ctx, Path(scratch) / f".coverage-{ctx.check_id}")


def _measure_into(params: Params, ctx: CheckContext, data_file: Path) -> bool:
    env = {"COVERAGE_FILE": str(data_file)}
    log = ctx.evidence_dir / "coverage_output.txt"
    steps = [
        ["{python}", "-m", "coverage", "erase"],
        ["{python}", "-m", "coverage", "run", "-m", "pytest", "-p", "no:cacheprovider", *params.pytest_args],
        ["{python}", "-m", "coverage", "combine", "--quiet"],
        ["{python}", "-m", "coverage", "json", "-o", str(ctx.evidence_dir / "coverage.json")],
    ]
    try:
        for i, argv in enumerate(steps):
            # An outer coverage run (pytest-cov, `coverage run`) must not leak its config into ours.
            done = run_logged(
                argv, log.with_suffix(f".{i}.txt"), ctx.repo_root, params.timeout_s, env, ("COV_CORE_", "COVERAGE_")
            )
            if done.returncode != 0 and i != 1:  # failing tests still yield coverage data
                return False
    finally:
        parts = sorted(log.parent.glob("coverage_output.*.txt"))
        log.write_text("".join(p.read_text(encoding="utf-8", errors="replace") for p in parts), encoding="utf-8")
        for p in parts:
            p.unlink()
    return True


def run(params: Params, ctx: CheckContext) -> Judgement:
    if params.report is not None:
        source = ctx.repo_root / params.report
        if source.is_file():
            name = "coverage.xml" if source.suffix == ".xml" else "coverage.json"
            shutil.copyfile(source, ctx.evidence_dir / name)
    else:
        _measure(params, ctx)
    ctx.write_json(
        "modules.json",
        {
            "repo_root": str(ctx.repo_root.resolve()),
            "modules": {m: _module_files(ctx.repo_root, m) for m in params.modules},
        },
    )
    if params.ratchet is not None:
        base = ctx.repo_root / params.ratchet.baseline_file
        if base.is_file():
            shutil.copyfile(base, ctx.evidence_dir / "coverage_base.json")
    return rejudge(params, ctx.evidence_dir)


def _percent(summaries: list[dict[str, Any]]) -> float | None:
    num = sum(s.get("covered_lines", 0) + s.get("covered_branches", 0) for s in summaries)
    den = sum(s.get("num_statements", 0) + s.get("num_branches", 0) for s in summaries)
    return round(100.0 * num / den, 2) if den else None


def _relative(files: dict[str, Any], repo_root: str) -> dict[str, dict[str, Any]]:
    """Coverage JSON keys relative to the repository (they may be absolute)."""
    prefix = repo_root.rstrip("/") + "/"
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v["summary"] for k, v in files.items()}


def _from_cobertura(path: Path) -> dict[str, Any]:
    """A Cobertura XML report in coverage.py JSON's shape (per-file summaries and the total)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise EvidenceError(f"{path.name} is not valid XML ({exc})") from None
    sources = [src.text.rstrip("/") + "/" for src in root.iter("source") if src.text]
    files: dict[str, Any] = {}
    for cls in root.iter("class"):
        name = cls.get("filename", "")
        summary = files.setdefault(name, {"summary": dict.fromkeys(_FIELDS, 0)})["summary"]
        for line in cls.iter("line"):
            summary["num_statements"] += 1
            summary["covered_lines"] += int(line.get("hits", "0")) > 0
            cond = line.get("condition-coverage")  # e.g. "50% (1/2)"
            if line.get("branch") == "true" and cond and "(" in cond:
                done, total = cond.split("(", 1)[1].rstrip(")").split("/")
                summary["covered_branches"] += int(done)
                summary["num_branches"] += int(total)
    # Cobertura paths are relative to a <source>; make them absolute so _relative can strip the root.
    if sources:
        files = {(k if k.startswith("/") else sources[0] + k): v for k, v in files.items()}
    overall = _percent([f["summary"] for f in files.values()])
    return {"files": files, "totals": {"percent_covered": overall}}


_FIELDS = ("num_statements", "covered_lines", "num_branches", "covered_branches")


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    parts = [f"{m} >= {v:g}%" for m, v in sorted(params.modules.items())]
    if params.global_min is not None:
        parts.append(f"global >= {params.global_min:g}%")
    if params.ratchet is not None:
        parts.append(f"global >= baseline + {params.ratchet.plus_pp:g} pp")
    expected = "; ".join(parts) or "a coverage report"
    evidence = present(
        evidence_dir, ["coverage.json", "coverage.xml", "modules.json", "coverage_base.json", "coverage_output.txt"]
    )
    try:
        if (evidence_dir / "coverage.xml").is_file():
            report = _from_cobertura(evidence_dir / "coverage.xml")
        else:
            report = read_json(evidence_dir / "coverage.json")
        modules_record = read_json(evidence_dir / "modules.json")
    except EvidenceError as exc:
        return error_judgement(expected, f"no coverage data: {exc}", evidence)
    mapping = modules_record["modules"]
    files = _relative(report.get("files", {}), modules_record["repo_root"])
    total = report.get("totals", {}).get("percent_covered")
    value: dict[str, Any] = {"global": round(float(total), 2) if total is not None else None, "modules": {}}
    fails: list[str] = []
    unknown: list[str] = []
    for module, minimum in sorted(params.modules.items()):
        module_files = mapping.get(module)
        if module_files is None:
            value["modules"][module] = None
            unknown.append(f"{module} does not exist yet")
            continue
        summaries = [files.get(f, {"num_statements": 1, "covered_lines": 0}) for f in module_files]
        pct = _percent(summaries)
        value["modules"][module] = pct
        if pct is None:
            unknown.append(f"{module} has no statements")
        elif pct < minimum:
            fails.append(f"{module} {pct:g}% < {minimum:g}%")
    if params.global_min is not None or params.ratchet is not None:
        if value["global"] is None:
            unknown.append("the report has no total")
    if value["global"] is not None:
        if params.global_min is not None and value["global"] < params.global_min:
            fails.append(f"global {value['global']:g}% < {params.global_min:g}%")
        if params.ratchet is not None:
            try:
                baseline = float(read_json(evidence_dir / "coverage_base.json")["global"])
            except (EvidenceError, KeyError, TypeError, ValueError) as exc:
                unknown.append(f"no usable baseline {params.ratchet.baseline_file} ({exc})")
            else:
                target = round(baseline + params.ratchet.plus_pp, 2)
                value["ratchet_target"] = target
                if value["global"] < target:
                    fails.append(f"global {value['global']:g}% < baseline {baseline:g} + {params.ratchet.plus_pp:g}")
    measured = [f"{m} {p:g}%" for m, p in value["modules"].items() if p is not None]
    if value["global"] is not None:
        measured.append(f"global {value['global']:g}%")
    if fails:
        return Judgement(
            verdict=Verdict.FAIL, value=value, expected=expected, reason="; ".join(fails + unknown), evidence=evidence
        )
    if unknown:
        reason = "; ".join(unknown) + (f" (measured: {', '.join(measured)})" if measured else "")
        return Judgement(verdict=Verdict.INCONCLUSIVE, value=value, expected=expected, reason=reason, evidence=evidence)
    reason = ", ".join(measured)
    return Judgement(verdict=Verdict.PASS, value=value, expected=expected, reason=reason, evidence=evidence)


CONTROLS = (NegativeControl("untested-code", "code no test runs in the most demanding module", _c.untested_code),)
