#!/usr/bin/env bash
# Collect a local canary (baseline git ref in a temporary worktree vs the working tree, both served by
# `montage serve --workers 0` on loopback, the same synthetic traffic) into canary_metrics.json.
# Collect only: judge with scripts/evaluate_canary.py.  The load is synthetic, not production traffic.
#   scripts/collect_canary_metrics.sh [--baseline-ref REF] [--requests N] [--max-duration-s S] [-o FILE]
set -euo pipefail
exec "${PYTHON:-python}" -m montage.ops.canary collect "$@"
