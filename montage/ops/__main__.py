"""``python -m montage.ops``: see :mod:`montage.ops.cli`."""

import sys

from montage.ops.cli import main

sys.exit(main())
