"""Check kinds: the measured tests a phase gate is made of.

Contract (every kind is one module; register it with ONE line in :data:`KINDS`):

``Params``
    a pydantic model (subclass :class:`montage.ops.checks.base.KindParams`, ``extra="forbid"``)
    validating the gate entry's ``with:`` mapping.  The loader validates it when phases load, so
    a bad parameter is reported as ``file:line:col`` before anything runs.
``run(params, ctx) -> Judgement``
    measures: runs tools, reads files, and writes its raw evidence into ``ctx.evidence_dir``
    (a directory inside the bundle being built).  It then judges, normally by returning
    ``rejudge(params, ctx.evidence_dir)``, so that the verdict is a pure function of the evidence.
``rejudge(params, evidence_dir) -> Judgement``
    re-judges from the stored raw evidence only (no tools, no repository access).
    ``phase.verify`` calls it and requires the same judgement, bit for bit.

A :class:`~montage.ops.checks.base.Judgement` carries the verdict (PASS / FAIL / INCONCLUSIVE /
ERROR), the measured value (JSON data), the expectation, the evidence files (relative to the
evidence directory) and a one-line reason.  A kind that cannot measure returns INCONCLUSIVE or
ERROR, never PASS.  Raise :class:`montage.errors.ToolMissing` when a required tool is absent.

The registry is a plain ``name -> "module.path"`` dict; modules are imported only when a kind is
used (:func:`load_kind`), so listing tasks never imports them.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from montage.ops.checks.base import CheckKind

# name -> module implementing the contract above.  One line per kind.
KINDS: dict[str, str] = {
    "canary": "montage.ops.checks.canary",
    "command": "montage.ops.checks.command",
    "coverage": "montage.ops.checks.coverage_thresholds",
    "file": "montage.ops.checks.file",
    "import_hacks": "montage.ops.checks.import_hacks",
    "log_contains": "montage.ops.checks.log_contains",
    "migrations": "montage.ops.checks.migrations",
    "perf_baseline": "montage.ops.checks.perf_baseline",
    "perf_guard": "montage.ops.checks.perf_guard",
    "pytest": "montage.ops.checks.pytest_junit",
    "stress": "montage.ops.checks.stress",
    "stub_scan": "montage.ops.checks.stub_scan",
}


def kind_names() -> list[str]:
    """Every registered kind, sorted."""
    return sorted(KINDS)


def load_kind(name: str) -> CheckKind:
    """Import the module of kind ``name``; ``KeyError`` if it is not registered."""
    module: ModuleType = importlib.import_module(KINDS[name])
    for attr in ("Params", "run", "rejudge"):
        if not hasattr(module, attr):
            raise TypeError(f"check kind {name!r} ({KINDS[name]}) does not define {attr}")
    return cast("CheckKind", module)
