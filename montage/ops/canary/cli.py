"""``python -m montage.ops.canary {collect,evaluate}``: the canary's thin command line.

``collect [--baseline-ref REF] [--requests N] [--max-duration-s S] [-o canary_metrics.json]``
    runs the local canary (synthetic loopback load) and writes the raw samples.
``evaluate canary_metrics.json [-o evaluate_canary.out]``
    judges stored samples against the SLOs; exit 0 PASS, 4 PARTIAL, 1 FAIL, 3 INCONCLUSIVE
    (montage/errors.py), 2 for an unreadable input.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from montage.errors import ExitCode, UsageError, run_reporting

PROG = "montage.ops.canary"
EXIT_OF = {
    "PASS": ExitCode.OK,
    "PARTIAL": ExitCode.PARTIAL,
    "FAIL": ExitCode.FAIL,
    "INCONCLUSIVE": ExitCode.INCONCLUSIVE,
}


def _parser() -> argparse.ArgumentParser:
    from montage.ops.checks.canary import Params

    d = Params()
    parser = argparse.ArgumentParser(prog=PROG, description="Local canary: baseline vs working tree on loopback.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)
    col = sub.add_parser("collect", help="serve both sides, send the same synthetic traffic, write raw samples")
    col.add_argument("--repo", type=Path, default=Path("."), help="git repository (the candidate tree)")
    col.add_argument("--baseline-ref", default=d.baseline_ref)
    col.add_argument("--requests", type=int, default=d.requests)
    col.add_argument("--max-duration-s", type=float, default=d.max_duration_s)
    col.add_argument("-o", "--output", type=Path, default=Path("canary_metrics.json"))
    ev = sub.add_parser("evaluate", help="judge a canary_metrics.json against the SLOs")
    ev.add_argument("metrics", type=Path)
    ev.add_argument("-o", "--output", type=Path, default=None, help="also write evaluate_canary.out here")
    ev.add_argument("--seed", type=int, default=d.seed)
    return parser


def cmd_collect(args: argparse.Namespace) -> int:
    from montage.core.files import atomic_write_text
    from montage.ops.canary.collect import collect

    if args.requests < 1 or args.max_duration_s <= 0:
        raise UsageError(
            f"--requests must be >= 1 and --max-duration-s > 0, got {args.requests} and {args.max_duration_s}."
        )
    metrics = collect(
        args.repo.resolve(), baseline_ref=args.baseline_ref, requests=args.requests, max_duration_s=args.max_duration_s
    )
    atomic_write_text(args.output, json.dumps(metrics, sort_keys=True, indent=2) + "\n")
    sent = {k: len(v["samples"]["status"]) for k, v in metrics["sides"].items()}
    print(f"{args.output}: {sent} requests per side ({metrics['note']})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from montage.core.files import atomic_write_text
    from montage.ops.canary.judge import judge
    from montage.ops.checks.canary import Params

    try:
        metrics = json.loads(args.metrics.read_text(encoding="utf-8"))
        result = judge(metrics, Params(seed=args.seed))
        text = result.text(metrics)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(
            f"{args.metrics}: not a readable canary_metrics.json ({type(exc).__name__}: {exc}); "
            "expected the document `collect` writes."
        ) from None
    if args.output is not None:
        atomic_write_text(args.output, text)
    print(text, end="")
    return int(EXIT_OF[result.verdict])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: unwind like Ctrl-C, so the temporary worktree is removed


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run_reporting(
            PROG,
            lambda: cmd_collect(args) if args.command == "collect" else cmd_evaluate(args),
            debug=args.debug,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
