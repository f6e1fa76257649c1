"""Command line of the perf guard (the nox session, invoke tasks and scripts all call this).

python -m montage.ops.perf guard [--baseline REF] [--report-dir D]      # PASS 0, FAIL 1, INCONCLUSIVE 3
python -m montage.ops.perf baseline [--runs N]                          # rewrites perf_baseline.json
python -m montage.ops.perf make-clip [-o DIR]                           # builds the reference input
python -m montage.ops.perf rejudge perf_report.json                     # re-decide from stored samples
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from montage.errors import ExitCode, UsageError, run_reporting

PROG = "python -m montage.ops.perf"
VERDICT_EXIT = {"PASS": ExitCode.OK, "FAIL": ExitCode.FAIL, "INCONCLUSIVE": ExitCode.INCONCLUSIVE}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Montage performance guard (CPU-time fps and ffmpeg RSS).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the working tree to measure (default: .)")
    parser.add_argument("--workdir", type=Path, default=Path("var/perf"), help="scratch: reference clip, outputs")
    sub = parser.add_subparsers(dest="command", required=True)

    guard = sub.add_parser("guard", help="measure the working tree and compare with the baseline")
    guard.add_argument("--baseline", dest="baseline_ref", metavar="REF", help="force an A/B run against git REF")
    guard.add_argument("--baseline-file", type=Path, default=Path("perf_baseline.json"))
    guard.add_argument("--report-dir", type=Path, default=Path("var/perf/report"))
    guard.add_argument("--history", type=Path, default=Path("var/perf/history.jsonl"), help="append-only JSON lines")
    guard.add_argument(
        "--phases-dir",
        type=Path,
        default=Path(os.environ.get("MONTAGE_OPS__PHASES_DIR", "phases")),
        help="thresholds: phase 7's perf_guard gate (default: $MONTAGE_OPS__PHASES_DIR or phases)",
    )
    guard.add_argument(
        "--flags-file",
        type=Path,
        default=None,
        help="where PERF_GUARD_ENABLED is read (default: $MONTAGE_OPS__FLAGS_FILE or var/flags.json)",
    )
    guard.add_argument("--max-fps-drop", type=float, help="override the phase file (fraction, e.g. 0.10)")
    guard.add_argument("--max-rss-growth", type=float, help="override the phase file (fraction, e.g. 0.15)")
    guard.add_argument(
        "--params",
        default=None,
        help="JSON object of perf_guard parameters (a gate entry's with:); overrides the phase",
    )
    guard.add_argument("--budget", type=float, default=90.0, help="seconds before an undecided run stops")
    guard.add_argument("--seed", type=int, default=0)
    guard.add_argument("--update-baseline", action="store_true", help="capture a new baseline instead (explicit)")
    guard.add_argument("--runs", type=int, default=7, help="measured runs with --update-baseline")

    base = sub.add_parser("baseline", help="capture perf_baseline.json (the only way it changes)")
    base.add_argument("--output", type=Path, default=Path("perf_baseline.json"))
    base.add_argument("--runs", type=int, default=7)

    clip = sub.add_parser("make-clip", help="build the reference clip and print its hash")
    clip.add_argument("-o", "--output-dir", type=Path, default=None)

    rejudge = sub.add_parser("rejudge", help="decide again from a stored perf_report.json")
    rejudge.add_argument("report", type=Path)
    return parser


def cmd_baseline(repo: Path, workdir: Path, output: Path, runs: int) -> int:
    from montage.ops.perf import baseline

    data = baseline.capture(repo, workdir=workdir, runs=runs, progress=lambda m: print(m, flush=True))
    baseline.write_baseline(output, data)
    s = data["summary"]
    print(
        f"perf baseline written to {output}: fps {data['fps']:.2f} (CPU time, cv {s['cpu_fps']['cv']:.1%}), "
        f"rss_mb {data['rss_mb']:.1f}, wall fps {data['wall_fps']:.1f}, parent {data['parent_rss_mb']:.1f} MiB, "
        f"{len(data['samples'])} runs in {data['duration_s']:.1f} s"
    )
    return 0


def cmd_guard(args: argparse.Namespace) -> int:
    from montage.core.flags import flags_path
    from montage.ops.perf import policy
    from montage.ops.perf.guard import run_guard
    from montage.ops.perf.report import write_report

    args.flags_file = flags_path(args.flags_file)
    if not policy.guard_enabled(args.flags_file):
        print(
            f"perf guard DISABLED: {policy.FLAG}=false in {args.flags_file} (phase 7 rollback); nothing measured. "
            f"Re-enable with `montage flags set {policy.FLAG} true`."
        )
        return 0
    params, source = policy.thresholds_from_phases(args.phases_dir)
    given: dict[str, object] = {}
    if args.params:
        try:
            given = json.loads(args.params)
        except json.JSONDecodeError as exc:
            raise UsageError(f'--params is not valid JSON ({exc}); expected an object such as {{"seed": 1}}.') from None
        if not isinstance(given, dict):
            raise UsageError(f"--params is {args.params!r}; expected a JSON object of perf_guard parameters.")
        source = "the gate entry (--params)"
    overrides = {
        k: v for k, v in (("max_fps_drop", args.max_fps_drop), ("max_rss_growth", args.max_rss_growth)) if v is not None
    }
    if overrides:
        source = "command line"
    # the command line's budget and seed always apply (the perf_guard check passes its own)
    params = policy.thresholds_from_params(
        params.model_dump(exclude_unset=True) | given | overrides | {"budget_s": args.budget, "seed": args.seed},
        source,
    )
    print(f"perf guard: thresholds -{params.max_fps_drop:.0%} fps, +{params.max_rss_growth:.0%} RSS from {source}")
    result = run_guard(
        args.repo,
        baseline_path=args.baseline_file,
        workdir=args.workdir,
        baseline_ref=args.baseline_ref,
        params=params,
        say=lambda m: print(m, flush=True),
    )
    doc = write_report(result, args.report_dir, args.history)
    for name, d in doc["decisions"].items():
        print(f"perf guard: {name}: {d['verdict']}: {d['reason']}")
    print(
        f"perf guard: {doc['verdict']} ({doc['reason']}; {doc['elapsed_s']:.1f} s). "
        f"Report: {args.report_dir / 'perf_report.md'}"
    )
    return int(VERDICT_EXIT[doc["verdict"]])


def cmd_rejudge(report: Path) -> int:
    from montage.ops.perf.guard import params_of_report, rejudge
    from montage.ops.perf.measure import RunSample

    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
        samples = [RunSample.from_dict(d) for d in doc["samples"]]
        verdict, decisions = rejudge(
            doc["mode"], samples, doc["baseline"]["samples"], params_of_report(doc), schema=int(doc.get("schema", 1))
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{report}: not a readable perf report ({type(exc).__name__}: {exc}).") from None
    same = verdict.value == doc["verdict"]
    print(f"{report}: stored {doc['verdict']}, re-judged {verdict.value}{'' if same else ' (MISMATCH)'}")
    if not same:
        return int(ExitCode.TAMPERED)
    return int(VERDICT_EXIT[verdict.value])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: unwind like Ctrl-C, so temporary worktrees are removed


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    previous = signal.signal(signal.SIGTERM, _interrupt)

    def dispatch() -> int:
        if args.command == "baseline":
            return cmd_baseline(args.repo, args.workdir, args.output, args.runs)
        if args.command == "guard":
            if args.update_baseline:
                return cmd_baseline(args.repo, args.workdir, args.baseline_file, args.runs)
            return cmd_guard(args)
        if args.command == "make-clip":
            from montage.ops.perf.workload import ensure_clip, find_ffmpeg

            clip = ensure_clip(args.output_dir or args.workdir, find_ffmpeg())
            print(f"{clip.path}  sha256 {clip.sha256}  {clip.frames} frames")
            return 0
        return cmd_rejudge(args.report)

    try:
        return run_reporting(PROG, dispatch, debug=args.debug)
    finally:
        signal.signal(signal.SIGTERM, previous)
