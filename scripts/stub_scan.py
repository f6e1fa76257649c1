#!/usr/bin/env python3
"""The plan's stub scan: ``python scripts/stub_scan.py [--json] [--allowlist FILE]``.

A thin entry point into ``python -m montage.ops scan --kind stub_scan``: functions whose body is only
``pass`` / ``...`` / ``raise NotImplementedError`` / a docstring, and TODO/FIXME comments, over
``git ls-files '*.py'``.  Exit 0 when none are left, 1 when some are, 3 when a file cannot be parsed.
"""

from __future__ import annotations

import sys

from montage.ops.cli import main

if __name__ == "__main__":
    sys.exit(main(["scan", "--kind", "stub_scan", *sys.argv[1:]]))
