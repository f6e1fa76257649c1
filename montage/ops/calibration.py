"""What the calibration scripts share (``scripts/calibrate_perf.py``, ``scripts/calibrate_canary.py``):
a committed JSON-lines file that every run is appended to the moment it finishes, the interleaved
order that tops each condition up to N runs (so a stopped sitting resumes), the machine's load, the
README block a table is generated into, and the command line (``--runs``, ``--condition``,
``--table``, ``--readme``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from montage.core import git as core_git
from montage.core.files import atomic_write_text
from montage.errors import ExitCode, UsageError


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every recorded run (a missing file: none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def append_row(path: Path, row: dict[str, Any]) -> None:
    """One JSON line, appended (O_APPEND: earlier runs are never rewritten)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(row, sort_keys=True) + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def pending(rows: Sequence[dict[str, Any]], runs: int, conditions: Sequence[str]) -> list[str]:
    """The runs still to do, one of each condition in turn, until each has ``runs`` rows."""
    have = {c: sum(1 for r in rows if r["condition"] == c) for c in conditions}
    order: list[str] = []
    while any(have[c] < runs for c in conditions):
        for c in conditions:
            if have[c] < runs:
                order.append(c)
                have[c] += 1
    return order


def load_1m() -> float:
    """The 1-minute load average now."""
    return round(os.getloadavg()[0], 2)


def median_range(values: Sequence[float]) -> str:
    """``median (min-max)`` to one decimal, or ``n/a``."""
    if not values:
        return "n/a"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def with_block(text: str, start: str, end: str, body: str) -> str:
    """``text`` (a README) with what lies between its ``start`` and ``end`` markers replaced by ``body``."""
    if text.count(start) != 1 or text.count(end) != 1:
        raise UsageError(f"the README needs one {start} ... {end} block for the calibration table.")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def by_condition(rows: Sequence[dict[str, Any]], conditions: Sequence[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The recorded rows of each condition, in the table's order (conditions without a run left out)."""
    groups = [(c, [r for r in rows if r["condition"] == c]) for c in conditions]
    return [(c, mine) for c, mine in groups if mine]


def parser(prog: str, description: str, *, runs: int, conditions: Sequence[str], results: Path,
           workdir: Path) -> argparse.ArgumentParser:  # fmt: skip
    """The options every calibration script takes."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--runs", type=int, default=runs, help=f"runs per condition the file should hold (default {runs})")
    p.add_argument("--condition", action="append", choices=conditions, help="only these (repeatable)")
    p.add_argument("--repo", type=Path, default=Path("."))
    p.add_argument("--results", type=Path, default=results, help=f"JSON lines, appended (default {results})")
    p.add_argument("--workdir", type=Path, default=workdir)
    p.add_argument("--table", action="store_true", help="print the table of the recorded runs and stop")
    p.add_argument("--readme", type=Path, help="write the table into this README's marked block and stop")
    return p


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: stop the running check cleanly (it stops its servers, removes worktrees)


def run_script(
    name: str,
    args: argparse.Namespace,
    *,
    table: Callable[[Sequence[dict[str, Any]]], str],
    readme_with_table: Callable[[str, Sequence[dict[str, Any]]], str],
    sitting: Callable[[], list[dict[str, Any]]],
) -> int:
    """``--table``, ``--readme`` or a sitting (then the table); errors and interrupts as exit codes."""
    started = dt.datetime.now(dt.UTC)
    try:
        if args.table:
            print(table(read_rows(args.results)))
            return int(ExitCode.OK)
        if args.readme:
            text = readme_with_table(args.readme.read_text(encoding="utf-8"), read_rows(args.results))
            atomic_write_text(args.readme, text)
            print(f"calibration table written into {args.readme}")
            return int(ExitCode.OK)
        signal.signal(signal.SIGTERM, _interrupt)
        rows = sitting()
    except UsageError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; every finished run is in {args.results}", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    print(table(rows))
    print(f"\n{len(rows)} runs recorded; this sitting started {started.isoformat(timespec='seconds')}.")
    return int(ExitCode.OK)


def header(*columns: str) -> list[str]:
    """A markdown table's header line and separator."""
    return [f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)]


def run_sitting(
    name: str,
    repo: Path,
    *,
    runs: int,
    conditions: Sequence[str],
    results: Path,
    one: Callable[[str, str], dict[str, Any]],
    summary: Callable[[dict[str, Any]], str],
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run ``one(commit, condition)`` until each of ``conditions`` has ``runs`` rows in ``results``,
    interleaved, appending each row the moment it is made; every recorded row."""
    commit = core_git.repo_state(repo).commit
    if not commit:
        raise UsageError(f"{repo} is not a git work tree with a commit to calibrate.")
    todo = pending(read_rows(results), runs, conditions)
    say(f"{name}: {len(todo)} runs to do at {commit[:12]} ({results})")
    for i, condition in enumerate(todo, 1):
        row = one(commit, condition)
        append_row(results, row)
        say(f"[{i}/{len(todo)}] {condition}: {summary(row)}")
    return read_rows(results)
