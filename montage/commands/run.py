"""``montage run INPUT... -o OUT``: long footage in, highlight montage out (plus plan and timelines)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from montage.errors import ExitCode, Interrupted, UsageError

if TYPE_CHECKING:
    from montage.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", type=Path, metavar="INPUT", help="video file(s)")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="montage MP4 to write (or plan with --plan-only)"
    )
    parser.add_argument("--duration", type=float, default=30.0, help="target duration in seconds (default 30)")
    parser.add_argument("--aspect", choices=["16:9", "9:16"], default="16:9", help="output aspect (default 16:9)")
    parser.add_argument(
        "--transcript",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="word-level transcript of the first input (JSON, SRT, WebVTT); several are fused (ROVER)",
    )
    parser.add_argument(
        "--loudness",
        type=float,
        default=None,
        metavar="LUFS",
        help="integrated loudness target (default: setting media.loudness_lufs, -16)",
    )
    parser.add_argument("--broadcast", action="store_true", help="EBU R128 broadcast preset: -23 LUFS, -1 dBTP")
    parser.add_argument(
        "--framing",
        choices=["motion", "centre"],
        default="motion",
        help="crop window when the aspect changes: follow motion (default) or centre",
    )
    parser.add_argument("--crossfade", type=float, default=0.0, metavar="S", help="crossfade between segments")
    parser.add_argument("--captions", action="store_true", help="burn captions from the transcript")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan-only", action="store_true", help="write the edit plan, render nothing")
    mode.add_argument("--from-plan", type=Path, metavar="PLAN", help="render exactly this edit plan")
    parser.add_argument(
        "--resolve", action="store_true", help="import the timeline into DaVinci Resolve (setting media.resolve_module)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


class _Progress:
    """A rich progress bar per stage on a terminal; plain lines otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}
        self._last: dict[str, int] = {}

    def __enter__(self) -> _Progress:
        if self.tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description:<8}"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            if stage not in self._tasks:
                self._tasks[stage] = self._bar.add_task(stage, total=1.0)
            self._bar.update(self._tasks[stage], completed=fraction)
            return
        step = int(fraction * 4)  # plain lines at 0, 25, 50, 75, 100 %
        if self._last.get(stage) != step:
            self._last[stage] = step
            print(f"montage: {stage} {step * 25}%", file=sys.stderr, flush=True)


def _options(args: argparse.Namespace, settings: Settings) -> Any:
    from montage.media.pipeline import BROADCAST_LUFS, RunOptions

    media = settings.media
    if args.from_plan is None and not args.inputs:
        raise UsageError("montage run needs at least one INPUT video (or --from-plan PLAN).")
    if args.from_plan is not None and args.inputs:
        raise UsageError("--from-plan renders exactly the plan's sources; do not also name INPUT files.")
    loudness = args.loudness if args.loudness is not None else media.loudness_lufs
    true_peak = media.true_peak_db
    if args.broadcast:
        loudness, true_peak = BROADCAST_LUFS, -1.0
    if not -70 <= loudness <= -5:
        raise UsageError(f"--loudness {loudness} is out of range; expected LUFS between -70 and -5 (e.g. -16).")
    if not 0 <= args.crossfade <= 2:
        raise UsageError(f"--crossfade {args.crossfade} is out of range; expected 0 to 2 seconds.")
    return RunOptions(
        inputs=list(args.inputs),
        output=args.output,
        duration=args.duration,
        aspect=args.aspect,
        transcripts=list(args.transcript),
        loudness=loudness,
        plan_only=args.plan_only,
        from_plan=args.from_plan,
        framing=args.framing,
        crossfade=args.crossfade,
        captions=args.captions,
        cache_dir=media.cache_dir,
        preset=media.preset,
        crf=media.crf,
        true_peak=true_peak,
        llm=settings.llm,
    )


def _terminated(signum: int, frame: object) -> None:
    raise Interrupted("stopped by SIGTERM; ffmpeg was stopped and partial files removed.")


def _resolve_module(settings: Settings) -> Any:
    """Resolve's scripting module, loaded before any work so a bad setting fails fast."""
    from montage.media.resolve import load_resolve_module

    module_path = settings.media.resolve_module
    if module_path is None:
        raise UsageError(
            "--resolve needs MONTAGE_MEDIA__RESOLVE_MODULE (setting media.resolve_module) pointing at "
            "DaVinciResolveScript.py."
        )
    return load_resolve_module(module_path)


def run(args: argparse.Namespace) -> int:
    from montage.media.ffmpeg import tools_from_settings
    from montage.media.pipeline import run as run_pipeline
    from montage.settings import load_settings

    settings = load_settings().settings  # once per process, handed to every step
    options = _options(args, settings)
    resolve = _resolve_module(settings) if args.resolve else None
    tools = tools_from_settings(settings)
    # A supervisor stops jobs with SIGTERM: turn it into an exception so ffmpeg is killed and temp files go.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        with _Progress(enabled=not args.json) as progress:
            report = run_pipeline(options, tools, progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = report.to_json()
    if resolve is not None and report.timelines:
        from montage.media.resolve import import_timeline

        otio_file = report.timelines["otio"]
        summary["resolve_timeline"] = import_timeline(resolve, otio_file, otio_file.stem)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"plan:      {report.plan_path}")
        if report.output is not None:
            print(f"montage:   {report.output} ({summary['duration']:.2f} s, {summary['size']}, {summary['aspect']})")
        for kind, path in report.timelines.items():
            print(f"timeline:  {path} ({kind.upper()})")
        if "resolve_timeline" in summary:
            print(f"resolve:   imported as timeline {summary['resolve_timeline']!r}")
        print(f"segments:  {summary['segments']} chosen by {report.plan.selector.name}")
        if report.verification is not None:
            print(f"loudness:  {report.verification.verdict}: {report.verification.reason}")
        for note in report.notes:
            print(f"note:      {note}")
        print("timings:   " + ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items()))
    if report.verification is not None and report.verification.verdict == "FAIL":
        print(f"montage: error: loudness check failed: {report.verification.reason}", file=sys.stderr)
        return ExitCode.FAIL
    return ExitCode.OK
