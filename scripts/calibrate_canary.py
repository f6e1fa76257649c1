#!/usr/bin/env python3
"""Calibrate the canary: A/A, +30 % p99 (a shift of every request and a tail-only shift), 2 % 5xx and a
failing optional import, each a real change of a candidate worktree of HEAD against the baseline HEAD;
prints the table (a benchmark script, not a test) and appends every run to docs/calibration/canary.jsonl
(resumable).

    python scripts/calibrate_canary.py [--runs 10] [--condition aa ...]   # until each condition has N runs
    python scripts/calibrate_canary.py --table                            # the table of the recorded runs
    python scripts/calibrate_canary.py --readme README.md                 # the table into the README

The candidate is a fresh worktree of HEAD (commit what you want calibrated). One canary takes about
70-120 s, so 10 runs of five conditions is a 1.5-hour sitting on a quiet machine.
"""

from __future__ import annotations

import sys

from montage.ops.canary.calibrate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
