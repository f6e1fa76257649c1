"""Calibration of the perf guard: how often it FAILs on A/A runs and on a real regression.

For each run a fresh candidate worktree of HEAD is made; for the regression scenario a patch is
applied to that worktree (never a hook in product code): ``--patch code`` (default) edits the
candidate's montage/media/render.py to encode with x264 "faster" whatever the plan says (a code
change: same fingerprint, so the guard goes stored baseline -> suspected regression -> A/B);
``--patch plan`` slows the preset in the candidate's reference plan (a workload change: the
fingerprint differs, so the guard goes straight to A/B). Either costs about 20 % more CPU per
run of the reference workload here. The guard runs exactly as a user runs it (``python -m montage.ops.perf
guard`` as a child process, cwd and PYTHONPATH at the candidate tree). The same raw runs are then
judged by a naive single-run 10 % rule (one measured run against the stored baseline, as
pytest-benchmark's ``--benchmark-compare-fail`` does), on wall-clock fps and on CPU-time fps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from montage.core.files import atomic_write_text
from montage.errors import ExitCode, UsageError
from montage.ops.perf.fingerprint import git
from montage.ops.perf.workload import WORKLOAD_FILE

GUARD_TIMEOUT_S = 300.0
SLOWER_PRESET = {"ultrafast": "veryfast", "superfast": "faster", "veryfast": "faster", "faster": "medium"}


RENDER_FILE = Path("montage/media/render.py")
RENDER_PRESET = '"preset": plan.render.preset,'


def patch_render_code(tree: Path) -> str:
    """Make the candidate's render path encode with the "faster" x264 preset (slower than veryfast)."""
    path = tree / RENDER_FILE
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if text.count(RENDER_PRESET) != 1:
        raise UsageError(f"{path}: expected one {RENDER_PRESET!r} to patch for the regression scenario.")
    path.write_text(text.replace(RENDER_PRESET, '"preset": "faster",'), encoding="utf-8")
    return f"{RENDER_FILE}: x264 preset forced to faster"


def apply_regression(tree: Path, kind: str = "plan") -> str:
    """Patch ``tree`` (``code``: the render module; ``plan``: the workload); describe the patch."""
    if kind == "code":
        return patch_render_code(tree)
    path = tree / WORKLOAD_FILE
    spec = json.loads(path.read_text(encoding="utf-8"))
    if spec.get("kind") == "montage-run":
        plan_path = tree / str(spec["plan"])
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        render = plan.get("render")
        if not isinstance(render, dict) or "preset" not in render:
            raise UsageError(f"{plan_path}: no render.preset to slow down for the regression scenario.")
        old = str(render["preset"])
        render["preset"] = SLOWER_PRESET.get(old, "medium")
        plan_path.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
        return f"{plan_path.relative_to(tree)}: render.preset {old} -> {render['preset']}"
    old = str(spec["preset"])
    spec["preset"] = SLOWER_PRESET.get(old, "medium")
    path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return f"{WORKLOAD_FILE}: preset {old} -> {spec['preset']}"


def _guard_once(
    repo: Path, baseline_file: Path, workdir: Path, out_dir: Path, patch: str | None, budget: float
) -> dict[str, Any]:
    """One guard run on a fresh candidate worktree of HEAD; returns its report plus timings."""
    parent = Path(tempfile.mkdtemp(prefix="montage-calib-"))
    tree = parent / "candidate"
    git(repo, "worktree", "add", "--detach", str(tree), "HEAD")
    try:
        patch_text = apply_regression(tree, patch) if patch else ""
        argv = [
            sys.executable, "-m", "montage.ops.perf", "--repo", str(tree), "--workdir", str(workdir),
            "guard", "--baseline-file", str(baseline_file), "--report-dir", str(out_dir),
            "--history", str(out_dir.parent / "history.jsonl"), "--phases-dir", str(tree / "phases"),
            "--flags-file", str(parent / "no-flags.json"), "--budget", str(budget),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(tree)}
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = proc.communicate(timeout=GUARD_TIMEOUT_S)
        finally:
            if proc.poll() is None:  # interrupted or timed out: SIGTERM lets the guard remove its worktree
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        elapsed = time.monotonic() - t0
    finally:
        git(repo, "worktree", "remove", "--force", str(tree))
        git(repo, "worktree", "prune")
        with contextlib.suppress(OSError):
            parent.rmdir()
    report_file = out_dir / "perf_report.json"
    if not report_file.is_file():
        tail = "\n".join(output.strip().splitlines()[-10:])
        raise UsageError(f"the guard wrote no report (exit {proc.returncode}):\n{tail}")
    doc: dict[str, Any] = json.loads(report_file.read_text(encoding="utf-8"))
    expected_rc = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}[doc["verdict"]]
    if proc.returncode != expected_rc:
        raise UsageError(f"guard exit {proc.returncode} does not match its verdict {doc['verdict']}")
    doc["calibration"] = {"elapsed_s": elapsed, "patch": patch_text, "exit": proc.returncode}
    return doc


def naive(doc: dict[str, Any], metric: str, baseline_value: float, drop: float = 0.10) -> str:
    """Single-run rule: the first measured candidate run against the stored baseline."""
    runs = [s for s in doc["prior_samples"] + doc["samples"] if s["side"] == "candidate" and not s["warmup"]]
    if not runs:
        return "INCONCLUSIVE"
    return "FAIL" if runs[0][metric] < (1.0 - drop) * baseline_value else "PASS"


def schedule(aa_runs: int, regression_runs: int, patch: str) -> list[tuple[str, str | None]]:
    """Alternate the scenarios, so that both meet the same machine conditions and a stopped
    calibration still has a balanced partial result (it is written after every run)."""
    aa: list[tuple[str, str | None]] = [("A/A", None)] * aa_runs
    reg: list[tuple[str, str | None]] = [("regression", patch)] * regression_runs
    plan = [item for pair in zip(aa, reg, strict=False) for item in pair]
    return plan + (aa if aa_runs > regression_runs else reg)[len(plan) // 2 :]


def calibrate(
    repo: Path,
    *,
    aa_runs: int,
    regression_runs: int,
    baseline_file: Path,
    workdir: Path,
    out_dir: Path,
    budget: float,
    patch: str = "code",
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    base = json.loads(baseline_file.read_text(encoding="utf-8"))
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    plan = schedule(aa_runs, regression_runs, patch)
    command = f"python scripts/calibrate_perf.py --aa {aa_runs} --regression {regression_runs} --patch {patch}"
    result: dict[str, Any] = {"rows": rows, "baseline_commit": base["commit"], "command": command}
    for i, (scenario, kind) in enumerate(plan, 1):
        doc = _guard_once(repo, baseline_file, workdir, out_dir / f"run-{i:02d}", kind, budget)
        fps = (doc["decisions"].get("fps") or {}).get("interval") or {}
        row = {
            "scenario": scenario,
            "verdict": doc["verdict"],
            "mode": doc["mode"],
            "elapsed_s": doc["calibration"]["elapsed_s"],
            "fps_ratio": fps.get("point"),
            "patch": doc["calibration"]["patch"],
            "naive_wall": naive(doc, "wall_fps", float(base["wall_fps"])),
            "naive_cpu": naive(doc, "cpu_fps", float(base["fps"])),
        }
        rows.append(row)
        say(
            f"[{i}/{len(plan)}] {scenario}: guard {row['verdict']} ({row['mode']}, {row['elapsed_s']:.0f} s, "
            f"fps ratio {row['fps_ratio']}); naive wall {row['naive_wall']}, naive CPU {row['naive_cpu']}"
        )
        result["total_s"] = time.monotonic() - started
        result["complete"] = i == len(plan)
        save(result, out_dir)
    return result


def save(result: dict[str, Any], out_dir: Path) -> None:
    atomic_write_text(out_dir / "calibration.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out_dir / "calibration.md", table(result) + "\n")


def table(result: dict[str, Any]) -> str:
    lines = [
        "| scenario | runs | guard FAIL | guard PASS | guard INCONCLUSIVE | naive 10 % wall fps FAIL "
        "| naive 10 % CPU fps FAIL | guard time median / max (s) | median fps ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario in ("A/A", "regression"):
        rows = [r for r in result["rows"] if r["scenario"] == scenario]
        if not rows:
            continue
        count = {v: sum(r["verdict"] == v for r in rows) for v in ("FAIL", "PASS", "INCONCLUSIVE")}
        times = [r["elapsed_s"] for r in rows]
        ratios = [r["fps_ratio"] for r in rows if isinstance(r["fps_ratio"], int | float)]
        label = scenario if scenario == "A/A" else f"regression ({rows[0]['patch']})"
        lines.append(
            f"| {label} | {len(rows)} | {count['FAIL']} | {count['PASS']} | {count['INCONCLUSIVE']} "
            f"| {sum(r['naive_wall'] == 'FAIL' for r in rows)} | {sum(r['naive_cpu'] == 'FAIL' for r in rows)} "
            f"| {statistics.median(times):.0f} / {max(times):.0f} "
            f"| {statistics.median(ratios) if ratios else float('nan'):.3f} |"
        )
    status = "" if result.get("complete", True) else " (stopped early: partial result)"
    lines.append(f"\nTotal calibration time: {result['total_s'] / 60:.1f} min{status} ({result.get('command', '')}).")
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: stop the running guard cleanly (it removes its worktrees)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/calibrate_perf.py", description=__doc__.splitlines()[0])
    parser.add_argument("--aa", type=int, default=20, help="A/A guard runs (default 20)")
    parser.add_argument("--regression", type=int, default=20, help="guard runs with a real regression (default 20)")
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--baseline-file", type=Path, default=Path("perf_baseline.json"))
    parser.add_argument("--workdir", type=Path, default=Path("var/perf"))
    parser.add_argument("--out", type=Path, default=Path("var/perf/calibration"))
    parser.add_argument("--budget", type=float, default=90.0)
    parser.add_argument("--patch", choices=["code", "plan"], default="code", help="where the regression goes")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = calibrate(
            args.repo.resolve(),
            aa_runs=args.aa,
            regression_runs=args.regression,
            baseline_file=args.baseline_file.resolve(),
            workdir=args.workdir.resolve(),
            out_dir=args.out.resolve(),
            budget=args.budget,
            patch=args.patch,
        )
    except UsageError as exc:
        print(f"calibrate_perf: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print(f"calibrate_perf: interrupted; partial results in {args.out / 'calibration.md'}", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    print(table(result))
    return int(ExitCode.OK)
