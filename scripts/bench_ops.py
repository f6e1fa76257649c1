#!/usr/bin/env python3
"""Benchmark the phase-gate toolkit's listing speed and AST-scan cost; prints both sides of each.

``python scripts/bench_ops.py [--runs 21]``

1. ``invoke --list`` with this repository's tasks.py (full roadmap) vs a one-task tasks.py;
2. ``nox -l`` with this repository's noxfile.py vs a one-session noxfile.py;
3. both AST scans (import hacks + stubs, one parse per file) vs bare ``ast.parse`` of the same
   ``git ls-files '*.py'``.

Each pair is measured interleaved (A, B, A, B, ...) and reported as the median; targets:
listing <= 1.3x, scans <= 1.5x.  Exit 0 when both targets hold, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from montage.ops.astscan import list_python_files, scan

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

ONE_TASK = "from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n"
ONE_SESSION = (
    "import nox\n\nnox.options.default_venv_backend = 'none'\n\n\n"
    "@nox.session(python=False)\ndef hello(session):\n    pass\n"
)


def _timed_cmd(argv: list[str], cwd: Path) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True, timeout=120, check=True)
        return time.perf_counter() - started

    return run


def interleaved(a: Callable[[], float], b: Callable[[], float], runs: int) -> tuple[float, float]:
    a(), b()  # warm-up: file-system cache, .pyc files
    xs, ys = [], []
    for _ in range(runs):
        xs.append(a())
        ys.append(b())
    return statistics.median(xs), statistics.median(ys)


def report(label: str, full: float, base: float, limit: float, unit: str = "ms") -> bool:
    ratio = full / base
    ok = ratio <= limit
    print(
        f"{label}: {full * 1000:.1f} {unit} vs {base * 1000:.1f} {unit} -> {ratio:.2f}x (limit {limit}x) "
        f"{'OK' if ok else 'TOO SLOW'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    runs = max(21, parser.parse_args().runs)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "tasks.py").write_text(ONE_TASK)
        (base / "noxfile.py").write_text(ONE_SESSION)
        invoke, nox = str(BIN / "invoke"), str(BIN / "nox")
        full, one = interleaved(_timed_cmd([invoke, "--list"], ROOT), _timed_cmd([invoke, "--list"], base), runs)
        ok &= report(f"invoke --list (median of {runs})", full, one, 1.3)
        full, one = interleaved(_timed_cmd([nox, "-l"], ROOT), _timed_cmd([nox, "-l"], base), runs)
        ok &= report(f"nox -l        (median of {runs})", full, one, 1.3)

    files, _ = list_python_files(ROOT)

    def both_scans() -> float:
        started = time.perf_counter()
        scan(ROOT, files)
        return time.perf_counter() - started

    def bare_parse() -> float:
        started = time.perf_counter()
        for rel in files:
            ast.parse((ROOT / rel).read_bytes(), filename=rel)
        return time.perf_counter() - started

    full, one = interleaved(both_scans, bare_parse, runs)
    ok &= report(f"AST scans over {len(files)} files vs bare ast.parse (median of {runs})", full, one, 1.5)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
