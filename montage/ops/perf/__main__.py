"""``python -m montage.ops.perf {guard,baseline,make-clip,rejudge}``: see montage/ops/perf/cli.py."""

from __future__ import annotations

import sys

from montage.ops.perf.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
