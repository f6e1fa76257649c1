"""Imports, counted: ``import_errors_total`` on /metrics reports every failure, by module.

``montage serve`` calls :func:`probe` at start-up: it imports every module the service, its workers
and the render path import lazily (:data:`LAZY_MODULES`, the OTIO adapters, the Resolve bridge when
configured), so a broken or shadowed module is counted before any request needs it.  An ImportError
raised later, while serving a request, is counted where it is handled (:func:`count_if_import_error`
in the service's last-resort error handler); one that fails a job's renderer (its own process) is
classified from the job's recorded error when /metrics is scraped (:func:`failed_job_imports`).

The count is process state (like the interpreter's own ``sys.modules``), kept here so any module can
record a failed optional import without knowing about an app or a metrics registry.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
import threading
from collections.abc import Callable, Iterable
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


# Every module the service, its workers and the render path import inside functions (lazily), so a
# broken or shadowed one would otherwise fail only when a request or a job first needs it.
# tests/service/test_imports.py scans montage/ for function-level imports and fails when one is missing.
LAZY_MODULES: tuple[str, ...] = (
    # third-party
    "alembic", "alembic.command", "alembic.config", "alembic.runtime.migration", "alembic.script", "alembic.util.exc",
    "av", "dotenv.parser", "ffmpeg", "httpx", "opentimelineio", "prometheus_client", "psutil",
    "rich.progress", "sqlalchemy", "sqlalchemy.engine", "sqlalchemy.exc", "uvicorn",
    # the app's own lazily imported modules (the render path and the workers)
    "montage.db.migrate", "montage.db.pgtemp", "montage.db.roundtrip",
    "montage.media.ffmpeg", "montage.media.llm", "montage.media.outputs", "montage.media.pipeline",
    "montage.media.plan", "montage.media.render", "montage.media.resolve", "montage.media.timeline",
    "montage.media.video_processor", "montage.runtime.jobcgroup", "montage.runtime.memory_manager",
    "montage.runtime.reaper", "montage.workers.executor", "montage.workers.worker",
    "montage.runtime", "montage.runtime.admission", "montage.workers.celery_engine",
)  # fmt: skip
# Optional: a fallback exists when they are not installed (imageio-ffmpeg: ffmpeg from PATH), or they
# belong to an extra only one engine needs (celery, redis: `pip install montage[celery]`), so only an
# installed one that fails to import is counted.
OPTIONAL_MODULES: tuple[str, ...] = (
    "imageio_ffmpeg", "celery", "celery.exceptions", "redis", "prometheus_client.multiprocess",
)  # fmt: skip
OTIO_ADAPTERS: tuple[str, ...] = ("fcp_xml", "otio_json")  # the timeline export's (loaded by name)


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return True  # present but broken: importing it will say how


def probe(resolve_module: str | None = None) -> dict[str, str]:
    """Import every lazily imported module now and count each failure (by module) in
    ``import_errors_total``; returns {module: error}.  ``resolve_module`` (setting
    media.resolve_module) is loaded by path like the Resolve bridge does, when it is set."""
    failed: dict[str, str] = {}

    def attempt(name: str, load: Callable[[], object]) -> None:
        try:
            load()
        except Exception as exc:  # a broken module raises whatever its top level raises
            record_import_error(name, exc)
            failed[name] = f"{type(exc).__name__}: {exc}"

    for module in LAZY_MODULES:
        attempt(module, functools.partial(importlib.import_module, module))
    for module in OPTIONAL_MODULES:
        if _installed(module):
            attempt(module, functools.partial(importlib.import_module, module))
    if "opentimelineio" not in failed:
        for adapter in OTIO_ADAPTERS:
            attempt(f"opentimelineio.adapters.{adapter}", functools.partial(_otio_adapter, adapter))
    if resolve_module:
        from pathlib import Path

        attempt("DaVinciResolveScript", functools.partial(_resolve, Path(resolve_module)))
    return failed


def _otio_adapter(name: str) -> object:
    import opentimelineio as otio

    return otio.adapters.from_name(name).module()


def _resolve(path: object) -> object:
    from pathlib import Path

    from montage.media.resolve import load_resolve_module

    assert isinstance(path, Path)
    return load_resolve_module(path)


def count_if_import_error(exc: BaseException) -> None:
    """Where an error is handled (a request's last-resort handler, a job): count an ImportError in
    its cause chain under the module it names."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ImportError):
            record_import_error(seen.name or "unknown", seen)
            return
        seen = seen.__cause__ or seen.__context__


_IMPORT_LINE = re.compile(r"^(?:ModuleNotFoundError|ImportError): (.*)$", re.M)
_MODULE_NAMED = re.compile(r"No module named '([^']+)'|cannot import name '[^']+' from '([^']+)'")


def import_error_in(text: str) -> str | None:
    """The module an ImportError in ``text`` (a failed job's recorded error: the renderer's stderr
    tail) names, ``"unknown"`` when its message names none, None when there is no ImportError."""
    found = _IMPORT_LINE.search(text)
    if found is None:
        return None
    named = _MODULE_NAMED.search(found.group(1))
    return (named.group(1) or named.group(2)) if named else "unknown"


def failed_job_imports(errors: Iterable[str | None]) -> dict[str, int]:
    """ImportErrors among failed jobs' errors, by module: the renderer runs in its own process, so
    the job's recorded error is where its ImportError is handled and classified."""
    out: dict[str, int] = {}
    for error in errors:
        module = import_error_in(error or "")
        if module is not None:
            out[module] = out.get(module, 0) + 1
    return out
