#!/bin/sh
# Capture perf_baseline.json: a thin entry point to the same code as
# `nox -s perf -- --update-baseline` and `invoke perf.baseline`.
# Usage: scripts/capture_perf_baseline.sh [--runs N] [--output FILE]
set -eu
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY="${PYTHON:-python3}"; fi
exec "$PY" -m montage.ops.perf baseline "$@"
