#!/usr/bin/env python3
"""Calibrate the perf guard: A/A, CPU in the filter graph, CPU in Python, RSS, a 2x analysis slowdown
and an improvement, each a real edit of a candidate worktree; prints the table (a benchmark script,
not a test) and appends every run to docs/calibration/perf_guard.jsonl (resumable).

    python scripts/calibrate_perf.py [--runs 20] [--condition aa ...]   # until each condition has N runs
    python scripts/calibrate_perf.py --table                            # the table of the recorded runs

Needs a clean HEAD (the candidate is HEAD plus the edit, the baseline HEAD). One guard run takes up
to 90 s, so 20 runs of six conditions is a three-hour sitting on a quiet machine.
"""

from __future__ import annotations

import sys

from montage.ops.perf.calibrate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
