"""Calibration of the canary: how often it FAILs on an A/A run and on the regressions it claims to catch.

Conditions (issue 14 item 7), each a fresh candidate worktree of HEAD against the baseline HEAD:

* ``aa``: nothing changed. Both sides serve the same tree with the same environment, so the canary
  must say ``comparison: A/A`` and, as a user runs it, its p99 SLO is INCONCLUSIVE by design ("no
  change to compare"): an A/A run cannot FAIL the p99 SLO unless it is allowed to decide it. The same
  samples are therefore judged twice, as a user runs it and with ``evaluate --allow-aa`` (the switch
  a phase with ``allow_aa: true`` uses), and the table has a row for each: the second one is the
  false-FAIL rate of the p99 SLO itself. (An A/B run against HEAD plus an inert edit would measure
  the same thing while pretending the trees differ; the A/A detection is part of what is calibrated.)
* ``p99-shift`` / ``p99-tail``: +30 % p99 as a shift of every request and as a tail-only shift;
* ``5xx-2pct``: 2 % of the requests answered 500;
* ``broken-import``: the lazily imported PyAV fails to import.

The changed conditions are :data:`montage.ops.canary.controls.CALIBRATION`: an overlay directory first
on the candidate's ``PYTHONPATH`` (as phase.selftest's controls), so the change is the product's
behaviour, never the canary's parameters. Every run is the canary a user runs, as child processes:
``python -m montage.ops.canary collect --baseline-ref HEAD`` with cwd and ``PYTHONPATH`` at the
candidate tree, then ``evaluate``, timed together (the issue's target: at most 120 s).

Every run is appended to a committed JSON-lines file (:data:`RESULTS`: verdicts, the p99 ratio and
the 5xx rate with their intervals, import errors, seconds, the 1-minute load before and after, nproc,
commit, UTC time) the moment it finishes; ``--runs N`` tops each condition up to N rows, so a stopped
calibration resumes and the counts accumulate over sittings; the conditions are interleaved so that
all meet the same machine. ``--table`` prints the table (the README's is generated from the file).
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from montage.core import git as core_git
from montage.core import proc as core_proc
from montage.core.cgroup import usable_cpus
from montage.errors import UsageError
from montage.ops import calibration
from montage.ops.calibration import load_1m, median_range, with_block
from montage.ops.canary import controls

RESULTS = Path("docs/calibration/canary.jsonl")
WORKDIR = Path("var/canary/calibration")
COLLECT_TIMEOUT_S = 400.0
EVALUATE_TIMEOUT_S = 120.0
AA = "aa"
CONDITIONS = (AA, "p99-shift", "p99-tail", "5xx-2pct", "broken-import")
LABELS = {
    AA: "A/A: a clean worktree of HEAD, as a user runs it (p99 INCONCLUSIVE by design)",
    "p99-shift": f"+30 % p99, every request (held {controls.SHIFT_FACTOR * 100:g} % of its handling time)",
    "p99-tail": f"+30 % p99, tail only ({controls.TAIL_SHARE:.0%} of requests held "
    f"{controls.TAIL_FACTOR:g}x their handling time)",
    "5xx-2pct": f"2 % 5xx (every {controls.CALIBRATION_EVERY}th request)",
    "broken-import": "failing optional import (PyAV shadowed)",
}
ALLOW_AA_LABEL = "A/A, the same runs judged with --allow-aa (p99 decides)"
TARGET = {AA: "0 FAIL", "p99-shift": ">= 9 of 10 FAIL", "p99-tail": ">= 9 of 10 FAIL",
          "5xx-2pct": "10 of 10 FAIL", "broken-import": "10 of 10 FAIL"}  # fmt: skip
GATE = {"PASS": "PASS", "FAIL": "FAIL", "PARTIAL": "INCONCLUSIVE", "INCONCLUSIVE": "INCONCLUSIVE"}
EXIT = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3, "PARTIAL": 4}
README_START = "<!-- canary-calibration-table -->"
README_END = "<!-- /canary-calibration-table -->"


def _canary_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "montage.ops.canary", *args]


def _evaluate(metrics: Path, tree: Path, *extra: str) -> str:
    """``evaluate`` as a child process; its verdict (the first line), checked against its exit code."""
    done = core_proc.run(_canary_cli("evaluate", str(metrics), *extra), timeout_s=EVALUATE_TIMEOUT_S, cwd=tree,
                         env={"PYTHONPATH": str(tree)})  # fmt: skip
    verdict = (done.stdout.splitlines() or [""])[0].strip()
    if EXIT.get(verdict) != done.returncode:
        what = " ".join(["evaluate", *extra])
        raise UsageError(f"`{what}` exited {done.returncode} with the first line {verdict!r}:\n{done.tail()}")
    return verdict


def achieved_p99_ratio(metrics: dict[str, Any]) -> float | None:
    """The size of the change the run met, measured without the canary's rule: the candidate's pooled p99
    over every request pair both sides answered divided by the baseline's (plain order statistics, no
    windows, no interval).  It tells whether a "+30 % p99" condition was +30 % in that run."""
    from montage.ops import stats
    from montage.ops.canary.judge import answered_pairs

    sides = metrics["sides"]
    pairs = [p for p in answered_pairs(sides["baseline"], sides["candidate"]) if p is not None]
    if len(pairs) < 100:
        return None
    p99 = [stats._quantile(sorted(p[k] for p in pairs), 0.99) for k in (0, 1)]
    return round(p99[0] / p99[1], 4)


def row_of(metrics: dict[str, Any], condition: str, change: str, verdicts: dict[str, str]) -> dict[str, Any]:
    """What the calibration file keeps of one canary (its stored samples re-judged in-process, seeded, which
    gives the verdict the child ``evaluate`` printed: checked)."""
    from montage.ops.canary.judge import judge
    from montage.ops.checks.canary import Params

    judged = judge(metrics, Params()).to_dict()
    if judged["verdict"] != verdicts["as_run"]:
        raise UsageError(f"evaluate said {verdicts['as_run']}, the in-process judgement {judged['verdict']}")
    slos = judged["slos"]
    cand = metrics["sides"]["candidate"]
    row: dict[str, Any] = {
        "condition": condition,
        "change": change,
        "said": "A/A" if metrics["comparison"]["aa"] else "A/B",
        "verdict": judged["verdict"],
        "slos": {name: s["verdict"] for name, s in slos.items()},
        "p99_ratio": slos["p99_latency_ratio"]["value"],
        "achieved_p99_ratio": achieved_p99_ratio(metrics),
        "error_rate_5xx": slos["error_rate_5xx"]["value"],
        "import_errors": slos["import_errors"]["value"],
        "import_errors_by_module": (cand.get("scrape_after") or {}).get("import_errors_by_module"),
        "requests": {side: len(doc["samples"]["status"]) for side, doc in metrics["sides"].items()},
        "commit": metrics["comparison"]["baseline_commit"],
    }
    if "allow_aa" in verdicts:
        allowed = judge(metrics, Params(allow_aa=True)).to_dict()
        if allowed["verdict"] != verdicts["allow_aa"]:
            raise UsageError(f"evaluate --allow-aa said {verdicts['allow_aa']}, in-process {allowed['verdict']}")
        row["allow_aa"] = {"verdict": allowed["verdict"], "p99": allowed["slos"]["p99_latency_ratio"]["verdict"]}
    return row


def canary_once(repo: Path, commit: str, condition: str, *, workdir: Path) -> dict[str, Any]:
    """One canary (collect + evaluate, timed) on a fresh candidate worktree of ``commit`` with ``condition``."""
    out = workdir / condition  # the last run of each condition stays here to be read
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "canary_metrics.json"
    metrics.unlink(missing_ok=True)
    with core_git.temporary_worktree(repo, commit, prefix="montage-ccal-", name="candidate") as worktree:
        tree = worktree.path
        change = "" if condition == AA else controls.write(tree, condition)
        load_before, started = load_1m(), time.monotonic()
        # Interrupted or timed out: SIGTERM and a grace period let collect stop its servers and remove its worktree.
        done = core_proc.run(_canary_cli("collect", "--repo", str(tree), "--baseline-ref", "HEAD", "-o", str(metrics)),
                             timeout_s=COLLECT_TIMEOUT_S, cwd=tree, env={"PYTHONPATH": str(tree)},
                             log=out / "collect.log", grace_s=60.0)  # fmt: skip
        collect_s = time.monotonic() - started
        if not done.ok or not metrics.is_file():
            raise UsageError(f"collect exit {done.returncode} ({out / 'collect.log'}):\n{done.tail()}")
        verdicts = {"as_run": _evaluate(metrics, tree, "-o", str(out / "evaluate_canary.out"))}
        seconds = time.monotonic() - started
        load_after = load_1m()
        if condition == AA:
            verdicts["allow_aa"] = _evaluate(metrics, tree, "--allow-aa")
    row = row_of(json.loads(metrics.read_text(encoding="utf-8")), condition, change, verdicts)
    cores, cores_from = usable_cpus()
    return row | {
        "seconds": round(seconds, 1),
        "collect_s": round(collect_s, 1),
        "load_1m": {"before": load_before, "after": load_after},
        "nproc": cores,  # usable CPUs: a cgroup quota counts, not only the affinity mask
        "nproc_source": cores_from,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def calibrate(
    repo: Path,
    *,
    runs: int,
    conditions: Sequence[str],
    results: Path,
    workdir: Path,
    say: Callable[[str], None] = print,
    once: Callable[..., dict[str, Any]] = canary_once,
) -> list[dict[str, Any]]:
    """Run the canary until each of ``conditions`` has ``runs`` rows in ``results`` (appended one by one)."""
    return calibration.run_sitting(
        "calibrate_canary", repo, runs=runs, conditions=conditions, results=results, say=say, summary=summary,
        one=lambda commit, condition: once(repo, commit, condition, workdir=workdir),
    )  # fmt: skip


def summary(row: dict[str, Any]) -> str:
    """One run on one line: verdicts, p99 ratio, seconds, load."""
    p99 = row["p99_ratio"]
    return (
        f"{row['verdict']} ({row['said']}; "
        + ", ".join(f"{k} {v}" for k, v in row["slos"].items())
        + (f"; --allow-aa {row['allow_aa']['verdict']}" if "allow_aa" in row else "")
        + f"), p99 ratio {p99['ratio'] if p99 else 'n/a'}, {row['seconds']:.0f} s, "
        f"load {row['load_1m']['before']}-{row['load_1m']['after']}"
    )


def _line(label: str, target: str, mine: Sequence[dict[str, Any]], verdicts: Sequence[str]) -> str:
    count = {v: sum(GATE[x] == v for x in verdicts) for v in ("FAIL", "PASS", "INCONCLUSIVE")}
    ratios = [r["p99_ratio"]["ratio"] for r in mine if r.get("p99_ratio")]
    achieved = [r["achieved_p99_ratio"] for r in mine if r.get("achieved_p99_ratio")]  # rows before it: none
    times = [r["seconds"] for r in mine]
    loads = [x for r in mine for x in (r["load_1m"]["before"], r["load_1m"]["after"])]
    nproc = "/".join(sorted({f"{r['nproc']:g}" for r in mine}))
    return (
        f"| {label} | {len(mine)} | {sum(r['said'] == 'A/A' for r in mine)} | {count['FAIL']} | {count['PASS']} "
        f"| {count['INCONCLUSIVE']} | {target} "
        f"| {f'{statistics.median(ratios):.3f}' if ratios else 'n/a'} "
        f"| {f'{statistics.median(achieved):.3f}' if achieved else 'n/a'} "
        f"| {statistics.median(times):.0f} / {max(times):.0f} | {median_range(loads)}, {nproc} |"
    )


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The calibration table (README, "Canary calibration"), from the recorded runs."""
    lines = calibration.header("condition", "runs", "said A/A", "FAIL", "PASS", "INCONCLUSIVE or PARTIAL",
                               "target", "median p99 ratio (judged)", "median pooled p99 ratio (achieved)",
                               "canary s median / max",
                               "load 1m median (min-max), nproc")  # fmt: skip
    for condition, mine in calibration.by_condition(rows, CONDITIONS):
        lines.append(_line(LABELS[condition], TARGET[condition], mine, [r["verdict"] for r in mine]))
        if condition == AA:
            lines.append(_line(ALLOW_AA_LABEL, "0 FAIL", mine, [r["allow_aa"]["verdict"] for r in mine]))
    return "\n".join(lines)


def readme_with_table(text: str, rows: Sequence[dict[str, Any]]) -> str:
    """``text`` (the README) with the table between its markers replaced by :func:`table` of ``rows``."""
    return with_block(text, README_START, README_END, table(rows))


def main(argv: Sequence[str] | None = None) -> int:
    parser = calibration.parser("scripts/calibrate_canary.py", __doc__.splitlines()[0], runs=10,
                                conditions=CONDITIONS, results=RESULTS, workdir=WORKDIR)  # fmt: skip
    args = parser.parse_args(argv)

    def sitting() -> list[dict[str, Any]]:
        return calibrate(args.repo.resolve(), runs=args.runs, conditions=args.condition or list(CONDITIONS),
                         results=args.results.resolve(), workdir=args.workdir.resolve())  # fmt: skip

    return calibration.run_script("calibrate_canary", args, table=table, readme_with_table=readme_with_table,
                                  sitting=sitting)  # fmt: skip
