"""nox sessions from :data:`montage.ops.sessions.NOX_SESSIONS` plus ``phase-N`` for every phase.

Sessions reuse the current environment (``python=False``: fast, no network).  A command's non-zero
exit code ends nox with that same code (``SystemExit``), so ``nox -s phase-2`` exits 4 for PARTIAL;
a session is never reported as skipped for a result that is not PASS.  Listing reads only the
phase file names / the cached index (:mod:`montage.ops.index`), never YAML.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from montage.ops.index import read as read_index
from montage.ops.lifeline import parent_env
from montage.ops.sessions import NOX_SESSIONS, PY, repo_root, run_named


def _session(name: str, commands: list[list[str]], doc: str, ops: bool = False) -> Callable[[Any], None]:
    def body(session: Any) -> None:
        rc = run_named(name, commands, extra=list(session.posargs), env=parent_env() if ops else None)
        if rc:
            session.log(f"exit code {rc} (passed through unchanged)")
            raise SystemExit(rc)

    body.__doc__ = doc
    return body


def register(nox: Any, phases_dir: Path | None = None) -> list[str]:
    """Register every session with ``nox.session``; returns the names."""
    names = []
    for name, commands in sorted(NOX_SESSIONS.items()):
        doc = " && ".join(" ".join(["python", *c[1:]] if c[0] == PY else c) for c in commands)
        nox.session(name=name, python=False)(_session(name, commands, doc))
        names.append(name)
    for pid, _slug, title in read_index(phases_dir or repo_root() / "phases"):
        name = f"phase-{pid}"
        nox.session(name=name, python=False)(
            _session(name, [[PY, "-m", "montage.ops", "run", str(pid)]], f"phase.run {pid}: {title}", ops=True)
        )
        names.append(name)
    return names
