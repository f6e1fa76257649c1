#!/usr/bin/env python3
"""Judge a canary_metrics.json against the canary SLOs (ROADMAP.md "Phase 2 in detail").

``python scripts/evaluate_canary.py canary_metrics.json [-o evaluate_canary.out]``

Exit 0 PASS, 4 PARTIAL, 1 FAIL, 3 INCONCLUSIVE, 2 unreadable input. See montage/ops/canary/cli.py.
"""

from __future__ import annotations

import sys

from montage.ops.canary.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
