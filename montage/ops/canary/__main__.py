"""``python -m montage.ops.canary {collect,evaluate}``: see montage/ops/canary/cli.py."""

from __future__ import annotations

import sys

from montage.ops.canary.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
