"""The roadmap's coverage plan (ROADMAP.md, W-0 to W-3) applied to Montage's modules, on branch coverage.

``python -m montage.ops coverage-plan [--data FILE] [--write-base]`` (``invoke coverage.plan``).
ROADMAP.md's weekly targets (baseline + 5, + 15, + 35 pp, then >= 80 %) were written for a codebase
far below today's coverage, so they are applied per focus module, on branch coverage, capped at
100 %: a week is met when each of its focus modules' branch coverage reaches its own baseline (from
``coverage_base.json``) plus the week's gain.  The figures come from a real coverage run: the
coverage check kind's own measurement (``coverage run -m pytest -m 'not slow'``), or an existing
coverage data file or coverage JSON report given with ``--data``.  ``--write-base`` records the
measured figures as the baseline.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from montage.errors import UsageError

BASE_FILE = "coverage_base.json"
FAST = ["-m", "not slow"]


def measure_command(pytest_args: list[str]) -> str:
    shown = " ".join(["-p", "no:cacheprovider", *(f"'{a}'" if " " in a else a for a in pytest_args)])
    return f"coverage run -m pytest {shown}; coverage combine; coverage json"


# The roadmap's names -> Montage's modules (the old system's classes are parts of these today).
MAPPING: dict[str, tuple[list[str], str]] = {
    "AudioNormalizer": (
        ["montage/media/loudness.py", "montage/media/render.py"],
        "EBU R128 measurement, one measured gain, true-peak limiter (loudness.py; applied in render.py)",
    ),
    "ROVER": (["montage/media/rover.py"], "transcript fusion"),
    "StoryBeats": (["montage/media/story_beats.py", "montage/media/llm.py"], "beats + the LLM provider clients"),
    "MemoryManager": (["montage/runtime/memory_manager.py", "montage/core/cgroup.py"], "cgroup-aware memory"),
    "VideoEffects": (["montage/media/render.py"], "crop, fades, crossfades, captions in the render graph"),
    "infrastructure": (
        ["montage/media/ffmpeg.py", "montage/errors.py", "montage/settings.py"],
        "ffmpeg runner/locator, errors, settings",
    ),
    "end-to-end pipeline": (
        ["montage/media/pipeline.py", "montage/media/video_processor.py"],
        "probe, analyse, pick, render",
    ),
    "DB": (["montage/db/database.py", "montage/db/jobs.py", "montage/db/models.py"], "jobs database"),
}


@dataclass(frozen=True)
class Week:
    name: str
    rule: str
    plus_pp: float | None  # None: an absolute floor
    floor: float | None
    focus: tuple[str, ...]


WEEKS = (
    Week("W-0", "baseline + 5 pp", 5.0, None, ("AudioNormalizer", "ROVER")),
    Week("W-1", "baseline + 15 pp", 15.0, None, ("StoryBeats", "MemoryManager")),
    Week("W-2", "baseline + 35 pp", 35.0, None, ("VideoEffects", "infrastructure")),
    Week("W-3", ">= 80 % (and never below baseline)", None, 80.0, ("end-to-end pipeline", "DB")),
)


def _ratio(num: int, den: int) -> float | None:
    return round(100.0 * num / den, 2) if den else None


def figures(summary: dict[str, Any]) -> dict[str, float | int | None]:
    """Line, branch and coverage.py's combined percentage of one coverage summary."""
    stmts, lines = summary.get("num_statements", 0), summary.get("covered_lines", 0)
    branches, covered = summary.get("num_branches", 0), summary.get("covered_branches", 0)
    return {
        "line": _ratio(lines, stmts),
        "branch": _ratio(covered, branches),
        "combined": _ratio(lines + covered, stmts + branches),
        "statements": stmts,
        "covered_lines": lines,
        "branches": branches,
        "covered_branches": covered,
    }


def _sum(summaries: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("num_statements", "covered_lines", "num_branches", "covered_branches")
    return {k: sum(int(s.get(k, 0)) for s in summaries) for k in keys}


def _mtime(path: Path) -> str:
    import datetime as dt

    try:
        return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OSError:
        return "at an unknown time"


def read_report(
    repo_root: Path, data: Path | None, pytest_args: list[str] | None = None, timeout_s: float = 7200
) -> tuple[dict[str, Any], str]:
    """A coverage.py JSON report and where it came from: ``data`` (JSON or a data file), or a fresh run."""
    from montage.core.proc import run_logged

    with tempfile.TemporaryDirectory(prefix="montage-coverage-") as tmp:
        out = Path(tmp) / "coverage.json"
        if data is not None and data.suffix == ".json":
            out, source = data, f"the coverage JSON report {data} (written {_mtime(data)})"
        elif data is not None:
            if not data.is_file():
                raise UsageError(f"--data {data}: no such coverage data file.")
            argv = ["{python}", "-m", "coverage", "json", "--data-file", str(data), "-o", str(out)]
            done = run_logged(argv, Path(tmp) / "json.log", repo_root, 600, None, ("COV_CORE_", "COVERAGE_"))
            if done.returncode != 0:
                raise UsageError(f"--data {data}: `coverage json` failed: {done.tail(3)}")
            source = f"coverage json --data-file {data} (an existing data file, written {_mtime(data)})"
        else:
            from montage.ops.checks import coverage_thresholds as kind
            from montage.ops.checks.base import CheckContext

            evidence = Path(tmp) / "evidence"
            evidence.mkdir()
            ctx = CheckContext(repo_root=repo_root, bundle_dir=Path(tmp) / "b", evidence_dir=evidence,
                               phase_id=0, check_id="coverage-plan")  # fmt: skip
            args = FAST if pytest_args is None else pytest_args
            if not kind._measure(kind.Params(timeout_s=timeout_s, pytest_args=args), ctx):
                raise UsageError(f"the coverage run failed; see {evidence / 'coverage_output.txt'}")
            out, source = evidence / "coverage.json", f"a fresh run: {measure_command(args)}"
        try:
            report = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{out}: not a coverage.py JSON report ({exc}).") from None
    if not isinstance(report, dict) or "files" not in report:
        raise UsageError(f"{out}: not a coverage.py JSON report (no 'files').")
    return report, source


def per_file(report: dict[str, Any], repo_root: Path) -> dict[str, dict[str, Any]]:
    from montage.ops.checks.coverage_thresholds import _relative

    return _relative(report["files"], str(repo_root.resolve()))


def baseline_record(
    report: dict[str, Any], repo_root: Path, source: str, git: dict[str, Any], date: str
) -> dict[str, Any]:
    """coverage_base.json: ``global`` (coverage.py's combined percent, what the ratchet reads) and the rest.

    ``git`` and ``date`` are taken before the run, so they name the code that was measured.
    """

    files = per_file(report, repo_root)
    total = figures(_sum(list(files.values())))
    return {
        "global": total["combined"],
        "global_line": total["line"],
        "global_branch": total["branch"],
        "modules": {path: figures(s) for path, s in sorted(files.items())},
        "git": git,
        "date": date,
        "command": source,
    }


def _module_branch(files: dict[str, dict[str, Any]], paths: list[str]) -> dict[str, float | int | None]:
    return figures(_sum([files.get(p, {"num_statements": 1, "num_branches": 1}) for p in paths]))


def plan(report: dict[str, Any], base: dict[str, Any], repo_root: Path) -> list[dict[str, Any]]:
    """Per week: each focus module's baseline, target and measured branch coverage, and whether it is met."""
    files = per_file(report, repo_root)
    base_modules = base.get("modules", {})
    weeks = []
    for week in WEEKS:
        rows = []
        for focus in week.focus:
            paths, _what = MAPPING[focus]
            measured = _module_branch(files, paths)
            before = figures(_sum([_raw(base_modules.get(p)) for p in paths]))
            base_branch = before["branch"]
            if base_branch is None:
                rows.append({"focus": focus, "modules": paths, "baseline": None, "target": None,
                             "measured": measured["branch"], "met": None, "note": "no baseline figure"})  # fmt: skip
                continue
            raw = base_branch + week.plus_pp if week.plus_pp is not None else max(week.floor or 0.0, base_branch)
            target = round(min(100.0, raw), 2)
            got = measured["branch"]
            rows.append({"focus": focus, "modules": paths, "baseline": base_branch, "target": target,
                         "capped": raw > 100.0, "measured": got, "met": got is not None and got >= target})  # fmt: skip
        met = all(r["met"] for r in rows) if all(r["met"] is not None for r in rows) else None
        weeks.append({"week": week.name, "rule": week.rule, "rows": rows, "met": met})
    return weeks


def _raw(entry: dict[str, Any] | None) -> dict[str, int]:
    """A baseline entry's counts in coverage.py's summary shape."""
    if not entry:
        return {}
    return {
        "num_statements": int(entry.get("statements", 0)),
        "covered_lines": int(entry.get("covered_lines", 0)),
        "num_branches": int(entry.get("branches", 0)),
        "covered_branches": int(entry.get("covered_branches", 0)),
    }


def read_base(repo_root: Path) -> dict[str, Any]:
    path = repo_root / BASE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{path} does not exist; record the baseline first: `invoke coverage.plan -- --write-base`."
        ) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("modules"), dict):
        raise UsageError(f"{path}: expected an object with 'global' and per-file 'modules' (written by --write-base).")
    return data


def render_lines(weeks: list[dict[str, Any]], base: dict[str, Any], source: str) -> list[str]:
    git = base.get("git") or {}

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f} %"

    out = [
        "Coverage roadmap (ROADMAP.md W-0..W-3), applied per focus module on BRANCH coverage, capped at 100 %.",
        "(The roadmap's +5/+15/+35 pp and >= 80 % were written for a codebase far below today's coverage.)",
        f"Baseline: {BASE_FILE}: global line {pct(base.get('global_line'))}, branch {pct(base.get('global_branch'))}, "
        f"commit {str(git.get('commit') or 'unknown')[:12]}{'+dirty' if git.get('dirty') else ''}, {base.get('date')}",
        f"Measured: {source}",
        "Mapping (roadmap name -> Montage module):",
    ]
    for name, (paths, what) in MAPPING.items():
        out.append(f"  {name:<20} -> {', '.join(paths)}  ({what})")
    for w in weeks:
        state = {True: "MET", False: "NOT MET", None: "UNKNOWN"}[w["met"]]
        out.append(f"{w['week']}  {w['rule']}: {state}")
        for r in w["rows"]:
            mark = {True: "met", False: "NOT met", None: "unknown"}[r["met"]]
            cap = " (capped at 100 %)" if r.get("capped") else ""
            out.append(f"  {r['focus']:<20} branch baseline {pct(r['baseline'])} -> target {pct(r['target'])}{cap}, "
                       f"measured {pct(r['measured'])}: {mark}")  # fmt: skip
    met = [w["week"] for w in weeks if w["met"]]
    out.append(f"Weeks met: {', '.join(met) or 'none'} of {len(weeks)}")
    return out
