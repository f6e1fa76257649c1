#!/usr/bin/env python3
"""Calibrate the perf guard: N A/A guard runs and N runs with a real CPU regression, side by side
with a naive single-run 10 % rule; prints the table (a benchmark script, not a test).

    python scripts/calibrate_perf.py [--aa 20] [--regression 20]

Needs a committed perf_baseline.json captured on this machine and a clean HEAD. The regression is a
slower x264 preset patched into each candidate worktree's render (see montage/ops/perf/calibrate.py).
One guard run takes up to 90 s, so the default 20 + 20 takes a while.
"""

from __future__ import annotations

import sys

from montage.ops.perf.calibrate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
