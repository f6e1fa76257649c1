"""``coverage``: per-module thresholds by dotted name, a global floor and a ratchet.

By default the check measures: ``coverage run -m pytest ARGS`` (the project's coverage config
follows subprocesses), ``coverage combine``, ``coverage json``.  With ``report:`` it judges an
existing coverage JSON report instead.  A threshold on a module that does not exist (no
``a/b.py`` nor ``a/b/`` package) is INCONCLUSIVE, never PASS; a module that exists but was never
imported counts as 0 %.  The ratchet requires ``global >= baseline + plus_pp`` with the baseline
read from ``coverage_base.json`` (``{"global": 61.5}``); no baseline is INCONCLUSIVE.

Percentages follow coverage.py: (covered lines + covered branches) / (statements + branches).
Evidence: ``coverage.json``, ``modules.json`` (which files each module maps to),
``coverage_base.json`` (when ratcheting), ``coverage_output.txt`` (when measuring).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from montage.ops._proc import run_logged
from montage.ops.checks.base import (
    CheckContext,
    EvidenceError,
    Judgement,
    KindParams,
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
    data_file = ctx.bundle_dir.parent / f".coverage-{ctx.phase_id}-{ctx.check_id}"
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
        for stray in data_file.parent.glob(data_file.name + "*"):
            stray.unlink(missing_ok=True)
        parts = sorted(log.parent.glob("coverage_output.*.txt"))
        log.write_text("".join(p.read_text(encoding="utf-8", errors="replace") for p in parts), encoding="utf-8")
        for p in parts:
            p.unlink()
    return True


def run(params: Params, ctx: CheckContext) -> Judgement:
    if params.report is not None:
        source = ctx.repo_root / params.report
        if source.is_file():
            shutil.copyfile(source, ctx.evidence_dir / "coverage.json")
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


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    parts = [f"{m} >= {v:g}%" for m, v in sorted(params.modules.items())]
    if params.global_min is not None:
        parts.append(f"global >= {params.global_min:g}%")
    if params.ratchet is not None:
        parts.append(f"global >= baseline + {params.ratchet.plus_pp:g} pp")
    expected = "; ".join(parts) or "a coverage report"
    evidence = present(evidence_dir, ["coverage.json", "modules.json", "coverage_base.json", "coverage_output.txt"])
    try:
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
    if fails:
        return Judgement(
            verdict=Verdict.FAIL, value=value, expected=expected, reason="; ".join(fails + unknown), evidence=evidence
        )
    if unknown:
        return Judgement(
            verdict=Verdict.INCONCLUSIVE, value=value, expected=expected, reason="; ".join(unknown), evidence=evidence
        )
    shown = ", ".join(f"{m} {p:g}%" for m, p in value["modules"].items())
    reason = (shown + "; " if shown else "") + f"global {value['global']:g}%"
    return Judgement(verdict=Verdict.PASS, value=value, expected=expected, reason=reason, evidence=evidence)
