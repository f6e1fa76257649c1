"""nox sessions, generated from montage/ops/sessions.py and phases/*.yaml (``nox -l``)."""

import nox

from montage.ops.nox_sessions import register

nox.options.default_venv_backend = "none"
register(nox)
