#!/usr/bin/env bash
# Collect a canary into canary_metrics.json.  Local source (default): the baseline (--baseline-ref REF,
# else --phase N's deployed commit, else HEAD; --same-code for a flag canary) in a temporary worktree vs
# the working tree, both served by `montage serve --workers 1` on loopback, the same synthetic traffic
# while both render the same tiny real jobs; --baseline-env/--candidate-env K=V (repeatable) per side.
# Prometheus source: --source prometheus [--window 2h] [--step 60s] [--scrape-interval 15s] --baseline-selector ... --candidate-selector ...
# (query_range against PROM_PROM_URL, bearer PROM_TOKEN).  Collect only: judge with scripts/evaluate_canary.py.
set -euo pipefail
exec "${PYTHON:-python}" -m montage.ops.canary collect "$@"
