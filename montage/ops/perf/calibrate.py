"""Calibration of the perf guard: how often it FAILs on A/A runs, on real regressions and on an improvement.

Conditions (:mod:`montage.ops.perf.controls`, each a real edit of a candidate worktree of HEAD):
A/A (no edit), CPU in the render's filter graph, CPU in Python, ffmpeg RSS, analysis twice as slow,
an improvement. Every guard run is the command a user runs (``python -m montage.ops.perf guard
--baseline HEAD`` as a child process, cwd and PYTHONPATH at the candidate tree), so the baseline
side is a fresh worktree of the same commit without the edit.

Every run is appended to a committed JSON-lines file (verdict, per-stage intervals, load average,
commit, time) the moment it finishes; ``--runs N`` runs each condition until the file holds N of
it, so a stopped calibration resumes and the counts accumulate over several sittings. The
conditions are interleaved (one of each in turn) so that all meet the same machine. ``--table``
prints the table from the file (the README's table is this output).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from montage.core import git as core_git
from montage.core import proc as core_proc
from montage.errors import UsageError
from montage.ops import calibration
from montage.ops.calibration import append_row as append_row
from montage.ops.calibration import median_range, with_block
from montage.ops.calibration import pending as pending
from montage.ops.calibration import read_rows as read_rows
from montage.ops.perf import controls

GUARD_TIMEOUT_S = 400.0
RESULTS = Path("docs/calibration/perf_guard.jsonl")
AA = "aa"
CONDITIONS = (AA, "cpu-filter", "cpu-python", "rss", "analysis-2x", "improvement")
LABELS = {AA: "A/A (no change)"} | {name: c.description for name, c in controls.CONTROLS.items()}
TARGET = {AA: "0 FAIL", "improvement": "0 FAIL"}


def row_of(doc: dict[str, Any], condition: str, patch: str, elapsed: float) -> dict[str, Any]:
    """What the calibration file keeps of one guard report."""
    samples = [s for s in doc["samples"] if not s["warmup"]]
    ratios: dict[str, dict[str, float]] = {}
    for stage in dict.fromkeys(s.get("stage", "render") for s in samples):
        for metric, key in (("cpu", "cpu_fps"), ("rss", "ffmpeg_rss_mb")):
            c = [s[key] for s in samples if s["side"] == "candidate" and s.get("stage", "render") == stage]
            b = [s[key] for s in samples if s["side"] == "baseline" and s.get("stage", "render") == stage]
            pairs = [x / y for x, y in zip(c, b, strict=False)]
            if pairs:
                ratios.setdefault(f"{metric}:{stage}", {})["median_pair_ratio"] = statistics.median(pairs)
    loads = [s["loadavg_before"][0] for s in samples] + [s["loadavg_after"][0] for s in samples]
    return {
        "condition": condition,
        "patch": patch,
        "verdict": doc["verdict"],
        "reason": doc["reason"],
        "decisions": {
            name: {"verdict": d["verdict"], "interval": d["interval"], "threshold": d["threshold"]}
            for name, d in doc["decisions"].items()
        },
        "median_pair_ratio": {name: r["median_pair_ratio"] for name, r in ratios.items()},
        "budget_s": doc["config"]["budget_s"],
        "pairs": sum(1 for s in samples if s["side"] == "candidate" and s.get("stage", "render") == "render"),
        "elapsed_s": round(elapsed, 1),
        "load_1m": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)} if loads else None,
        "commit": doc["sides"].get("baseline", {}).get("commit", ""),
        "finished_at": doc["finished_at"],
    }


def guard_once(
    repo: Path, commit: str, condition: str, *, workdir: Path, out_dir: Path, budget: float
) -> dict[str, Any]:
    """One guard run on a fresh candidate worktree of ``commit`` with ``condition`` applied."""
    with core_git.temporary_worktree(repo, commit, prefix="montage-calib-", name="candidate") as worktree:
        tree = worktree.path
        patch = "" if condition == AA else controls.apply(tree, condition)
        argv = [
            sys.executable, "-m", "montage.ops.perf", "--repo", str(tree), "--workdir", str(workdir),
            "guard", "--baseline", commit, "--baseline-file", str(repo / "perf_baseline.json"),
            "--report-dir", str(out_dir), "--history", str(out_dir / "history.jsonl"),
            "--phases-dir", str(tree / "phases"), "--flags-file", str(tree.parent / "no-flags.json"),
            "--budget", str(budget),
        ]  # fmt: skip
        # Interrupted or timed out: SIGTERM and a grace period let the guard remove its own worktree.
        done = core_proc.run(argv, timeout_s=GUARD_TIMEOUT_S, cwd=tree, env={"PYTHONPATH": str(tree)},
                             log=tree.parent / "guard.log", grace_s=60.0)  # fmt: skip
    report = out_dir / "perf_report.json"
    if not report.is_file():
        raise UsageError(f"the guard wrote no report (exit {done.returncode}):\n{done.tail(10)}")
    doc: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    if done.returncode != {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}[doc["verdict"]]:
        raise UsageError(f"guard exit {done.returncode} does not match its verdict {doc['verdict']}")
    report.unlink()
    return row_of(doc, condition, patch, done.duration_s)


def calibrate(
    repo: Path,
    *,
    runs: int,
    conditions: Sequence[str],
    results: Path,
    workdir: Path,
    budget: float,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    return calibration.run_sitting(
        "calibrate_perf", repo, runs=runs, conditions=conditions, results=results, say=say,
        one=lambda commit, condition: guard_once(repo, commit, condition, workdir=workdir,
                                                 out_dir=workdir / "calibration", budget=budget),
        summary=lambda row: f"{row['verdict']} after {row['pairs']} pairs, {row['elapsed_s']:.0f} s, "
        f"load {row['load_1m']['median'] if row['load_1m'] else 'n/a'}",
    )  # fmt: skip


def _point(row: dict[str, Any], name: str) -> float | None:
    value = (row.get("median_pair_ratio") or {}).get(name)
    return float(value) if value is not None else None


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The calibration table (README, "Perf guard calibration"), from the recorded runs."""
    lines = calibration.header("condition", "runs", "FAIL", "PASS", "INCONCLUSIVE", "target",
                               "median pair ratio: plan / render CPU-time fps, render RSS", "pairs median", "budget s",
                               "guard s median / max", "load 1m median (min-max)")  # fmt: skip
    for condition, mine in calibration.by_condition(rows, CONDITIONS):
        count = {v: sum(r["verdict"] == v for r in mine) for v in ("FAIL", "PASS", "INCONCLUSIVE")}

        def med(name: str, mine: list[dict[str, Any]] = mine) -> str:
            values = [p for r in mine if (p := _point(r, name)) is not None]
            return f"{statistics.median(values):.3f}" if values else "n/a"

        times = [r["elapsed_s"] for r in mine]
        budgets = "/".join(sorted({f"{float(r.get('budget_s', 90)):g}" for r in mine}))
        loads = [r["load_1m"]["median"] for r in mine if r.get("load_1m")]
        load = median_range(loads)
        lines.append(
            f"| {LABELS.get(condition, condition)} | {len(mine)} | {count['FAIL']} | {count['PASS']} "
            f"| {count['INCONCLUSIVE']} | {TARGET.get(condition, '>= 95 % FAIL')} "
            f"| {med('cpu:plan')} / {med('cpu:render')}, {med('rss:render')} "
            f"| {statistics.median(r['pairs'] for r in mine):g} "
            f"| {budgets} "
            f"| {statistics.median(times):.0f} / {max(times):.0f} "
            f"| {load} |"
        )
    return "\n".join(lines)


README_START = "<!-- perf-calibration-table -->"
README_END = "<!-- /perf-calibration-table -->"


def readme_with_table(text: str, rows: Sequence[dict[str, Any]]) -> str:
    """``text`` (the README) with the table between its markers replaced by :func:`table` of ``rows``."""
    return with_block(text, README_START, README_END, table(rows))


def main(argv: Sequence[str] | None = None) -> int:
    parser = calibration.parser("scripts/calibrate_perf.py", __doc__.splitlines()[0], runs=20, conditions=CONDITIONS,
                                results=RESULTS, workdir=Path("var/perf"))  # fmt: skip
    parser.add_argument("--budget", type=float, default=90.0)
    args = parser.parse_args(argv)

    def sitting() -> list[dict[str, Any]]:
        return calibrate(args.repo.resolve(), runs=args.runs, conditions=args.condition or list(CONDITIONS),
                         results=args.results.resolve(), workdir=args.workdir.resolve(),
                         budget=args.budget)  # fmt: skip

    return calibration.run_script("calibrate_perf", args, table=table, readme_with_table=readme_with_table,
                                  sitting=sitting)  # fmt: skip
