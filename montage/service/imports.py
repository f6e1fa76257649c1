"""Optional imports, counted: ``import_errors_total`` on /metrics reports every failure.

The count is process state (like the interpreter's own ``sys.modules``), kept here so any module can
record a failed optional import without knowing about an app or a metrics registry.
"""

from __future__ import annotations

import importlib
import logging
import threading
from types import ModuleType

log = logging.getLogger("montage.imports")
_lock = threading.Lock()
_failures: dict[str, int] = {}


def record_import_error(module: str, exc: BaseException) -> None:
    """Count a failed import of ``module`` (and log it once per failure)."""
    with _lock:
        _failures[module] = _failures.get(module, 0) + 1
    log.warning("optional import of %s failed: %s: %s", module, type(exc).__name__, exc)


def optional_import(module: str) -> ModuleType | None:
    """``importlib.import_module(module)``, or None (counted) when it cannot be imported."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        record_import_error(module, exc)
        return None


def import_error_counts() -> dict[str, int]:
    with _lock:
        return dict(_failures)
