"""``python -m montage.ops.canary {collect,evaluate}``: the canary's thin command line.

``collect [--phase N] [--baseline-ref REF] [--baseline-env K=V]... [--candidate-env K=V]...
[--database sqlite|postgres] [--pg-bindir DIR] [--requests N] [--jobs N] [--max-duration-s S]
[-o canary_metrics.json]``
    runs the local canary (synthetic loopback load, real jobs) and writes the raw samples.  The
    baseline is ``--baseline-ref``, else the commit of phase N's last PASS run (``--phase``),
    else ``HEAD``; ``--*-env`` (repeatable) are applied to that side after the canary's own settings.
    ``--database postgres``: both sides on a throwaway PostgreSQL primary + hot standby, a database
    each, whose URLs ``--*-env`` values may name as ``{pg_primary}`` / ``{pg_standby}``; when it
    cannot start, the document says why and collect exits 3 (INCONCLUSIVE).
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
    col.add_argument("--phase", type=int, default=None, help="take the baseline from this phase's last PASS run")
    col.add_argument("--baseline-ref", default=None, help="serve this ref as the baseline (beats --phase)")
    col.add_argument("--same-code", action="store_true",
                     help="both sides serve the working tree (a flag canary: they differ only in --*-env)")  # fmt: skip
    for side in ("baseline", "candidate"):
        col.add_argument(f"--{side}-env", action="append", default=[], metavar="K=V",
                         help=f"set K=V for the {side} side, after the canary's own settings (repeatable)")  # fmt: skip
    col.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default=d.database,
        help="postgres: a throwaway primary + hot standby; --*-env may use {pg_primary}/{pg_standby}",
    )
    col.add_argument("--pg-bindir", default=None,
                     help="postgres: server binaries (default $MONTAGE_TEST_PG_BIN, else the Debian path)")  # fmt: skip
    col.add_argument("--source", choices=("local", "prometheus"), default="local")
    col.add_argument("--cross-check-prometheus", action="store_true",
                     help="local: a real Prometheus also scrapes both sides; judged again from its series")  # fmt: skip
    col.add_argument("--window", default="2h", help="prometheus: the window read (90s, 30m, 2h)")
    col.add_argument("--step", default="60s", help="prometheus: the query step")
    col.add_argument("--scrape-interval", default="15s",
                     help="prometheus: the series' scrape interval (rate range: max(step + it, 4 x it))")  # fmt: skip
    col.add_argument("--baseline-selector", default="", help='prometheus: e.g. track="baseline"')
    col.add_argument("--candidate-selector", default="", help='prometheus: e.g. track="canary"')
    col.add_argument("--requests", type=int, default=d.requests)
    col.add_argument("--jobs", type=int, default=d.jobs, help="real jobs submitted to each side")
    col.add_argument("--workers", type=int, default=d.workers, help="embedded workers per side")
    col.add_argument("--max-duration-s", type=float, default=d.max_duration_s)
    col.add_argument("--drain-s", type=float, default=d.drain_s, help="wait this long at most for the jobs")
    col.add_argument("-o", "--output", type=Path, default=Path("canary_metrics.json"))
    ev = sub.add_parser("evaluate", help="judge a canary_metrics.json against the SLOs")
    ev.add_argument("metrics", type=Path)
    ev.add_argument("-o", "--output", type=Path, default=None, help="also write evaluate_canary.out here")
    ev.add_argument("--seed", type=int, default=d.seed)
    ev.add_argument("--allow-aa", action="store_true", help="let an A/A canary decide the p99 SLO")
    return parser


def parse_env(values: list[str], option: str) -> dict[str, str]:
    """``K=V`` strings as a mapping; a value without ``=`` or with an empty name is a usage error."""
    out: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition("=")
        if not sep or not name or not name.replace("_", "").isalnum():
            raise UsageError(f"{option} {raw!r}: expected NAME=value with NAME of letters, digits and underscores.")
        out[name] = value
    return out


def seconds(raw: str, option: str) -> float:
    """``90``, ``90s``, ``30m``, ``2h`` as seconds; anything else is a usage error."""
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in scale else (raw, "s")
    try:
        value = float(number) * scale[unit]
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{option} {raw!r}: expected a positive duration such as 90s, 30m or 2h.")
    return value


def cmd_collect(args: argparse.Namespace) -> int:
    from montage.core.files import atomic_write_text
    from montage.ops.canary import baseline, pgsides
    from montage.ops.canary.collect import collect
    from montage.ops.canary.judge import SYNTHETIC_NOTE, comparison_line

    if args.source == "prometheus":
        from montage.ops.canary import prometheus

        selectors = {"baseline": args.baseline_selector, "candidate": args.candidate_selector}
        doc = prometheus.collect(selectors, window_s=seconds(args.window, "--window"),
                                 step_s=seconds(args.step, "--step"),
                                 scrape_interval_s=seconds(args.scrape_interval, "--scrape-interval"))  # fmt: skip
        atomic_write_text(args.output, json.dumps(doc, sort_keys=True, indent=2) + "\n")
        print(f"{args.output}: {doc['note']}")
        return 0

    if args.requests < 1 or args.max_duration_s <= 0 or args.jobs < 0 or args.workers < 0:
        raise UsageError(
            f"--requests must be >= 1, --max-duration-s > 0, --jobs and --workers >= 0; got {args.requests}, "
            f"{args.max_duration_s}, {args.jobs} and {args.workers}."
        )
    b_env, c_env = parse_env(args.baseline_env, "--baseline-env"), parse_env(args.candidate_env, "--candidate-env")
    repo = args.repo.resolve()
    if args.same_code:
        chosen = baseline.Baseline(None, "the candidate's own tree (--same-code)")
    else:
        # no --phase and no --baseline-ref: HEAD, i.e. the uncommitted change (A/A on a clean tree, and then it says so)
        chosen = baseline.resolve(repo, phase_id=args.phase, explicit=args.baseline_ref, fallback="HEAD")
    try:
        metrics = collect(
            repo, baseline_ref=chosen.ref, baseline_how=chosen.how, baseline_env=b_env, candidate_env=c_env,
            requests=args.requests, jobs=args.jobs, workers=args.workers, max_duration_s=args.max_duration_s,
            drain_s=args.drain_s, database=args.database, pg_bindir=args.pg_bindir,
            cross_check_prometheus=args.cross_check_prometheus,
        )  # fmt: skip
    except pgsides.DatabaseUnavailable as exc:
        atomic_write_text(args.output, json.dumps(pgsides.unavailable_document(str(exc), note=SYNTHETIC_NOTE),
                                                  sort_keys=True, indent=2) + "\n")  # fmt: skip
        print(f"{args.output}: INCONCLUSIVE, nothing measured: {exc}", file=sys.stderr)
        return int(ExitCode.INCONCLUSIVE)
    atomic_write_text(args.output, json.dumps(metrics, sort_keys=True, indent=2) + "\n")
    sent = {k: len(v["samples"]["status"]) for k, v in metrics["sides"].items()}
    print(f"{args.output}: {sent} requests per side ({metrics['note']})")
    print(comparison_line(metrics))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from montage.core.files import atomic_write_text
    from montage.ops.canary.judge import judge
    from montage.ops.checks.canary import Params

    try:
        metrics = json.loads(args.metrics.read_text(encoding="utf-8"))
        result = judge(metrics, Params(seed=args.seed, allow_aa=args.allow_aa))
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
