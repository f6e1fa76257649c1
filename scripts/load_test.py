#!/usr/bin/env python3
"""Load test of the Montage HTTP API (job-status reads and submissions at fixed rates) on SQLite and PostgreSQL.

``python scripts/load_test.py [--backend sqlite|postgresql|both] [--rates 25,100] [--seconds 8] [--out FILE]``

Prints a Markdown table: throughput and p50/p99 latency per backend, scenario and rate.
Exit 0 when every request succeeded, 1 otherwise. See montage/service/loadtest.py.
"""

from __future__ import annotations

import sys

from montage.service.loadtest import cli

if __name__ == "__main__":
    sys.exit(cli())
