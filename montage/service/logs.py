"""Logging for ``montage serve`` and ``montage worker``: the first line is exactly ``Config source=...``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from montage.settings import LoadedSettings

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def setup_logging(loaded: LoadedSettings, log_file: Path | None, *, truncate: bool = False) -> None:
    """Log to stderr (and ``log_file``); write ``loaded.log_line`` verbatim as the first line.

    ``montage serve`` truncates the file once so its first line is this run's; then it writes with
    O_APPEND like its workers: a handle opened "w" keeps its own offset and overwrites what the
    workers appended meanwhile.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        if truncate:
            log_file.open("w").close()
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    bare = logging.Formatter("%(message)s")
    for handler in handlers:
        handler.setFormatter(bare)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(loaded.settings.log_level)
    # Alembic logs a line per plugin, and "Context impl ..." on every readiness probe: noise.
    # `montage serve` logs the migration it ran itself.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    logging.getLogger("montage.config").warning(loaded.log_line)
    formatter = logging.Formatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
