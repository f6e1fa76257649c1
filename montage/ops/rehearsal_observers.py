"""What each rollback flag's component does, for :mod:`montage.ops.rehearsal` (and the rollback tests).

This file's *source* is run by a child Python whose ``sys.path`` starts with the worktree under
rehearsal (``python -c``), so each observer drives that tree's own components; keep it self-contained:
standard library at the top, montage imported inside the functions.
"""

from __future__ import annotations

import asyncio
from pathlib import Path


def _environ(flags_file: Path) -> dict[str, str]:
    return {"USE_SETTINGS_V2": "true", "MONTAGE_OPS__FLAGS_FILE": str(flags_file), "MONTAGE_ENV_FILE": "",
            "MONTAGE_SECRETS_DIR": ""}  # fmt: skip


def observe_settings_source(flags_file: Path) -> str:
    import warnings

    from montage.settings import load_settings

    environ = {k: v for k, v in _environ(flags_file).items() if k != "USE_SETTINGS_V2"}  # the flag decides
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy loader says it is deprecated
        return f"settings loader {load_settings(environ=environ).source}"


def observe_split_admin_port(flags_file: Path) -> str:
    from montage.service.split import admin_port
    from montage.settings import load_settings

    return f"admin port {admin_port(load_settings(environ=_environ(flags_file)))}"


def observe_reaper(flags_file: Path) -> str:
    from montage.runtime.reaper import reaping

    async def go() -> str:
        async with reaping(flags_file, interval_s=60) as reaper:
            return "reaping orphans" if reaper is not None else "not reaping"

    return asyncio.run(go())


def observe_perf_session(flags_file: Path) -> str:
    from montage.ops import sessions

    # the flags file is MONTAGE_OPS__FLAGS_FILE (the rehearsal sets it), else var/flags.json under root
    disabled = sessions.disabled_by_flag("perf", flags_file.parent.parent)
    return "perf session disabled" if disabled else "perf session enabled"


# flag -> observer (by name: the rehearsal calls it in the child)
OBSERVERS: dict[str, str] = {
    "USE_SETTINGS_V2": "observe_settings_source",
    "API_SPLIT_ADMIN_PORT": "observe_split_admin_port",
    "ZOMBIE_REAPER_ENABLED": "observe_reaper",
    "PERF_GUARD_ENABLED": "observe_perf_session",
}
