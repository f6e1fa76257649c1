"""Flags: the flags file, where it is, which flags exist, and the one rule for what a value means.

* **Where**: :func:`flags_path` is the only place the path is worked out: an explicit path, else
  ``MONTAGE_OPS__FLAGS_FILE`` from the same sources and in the same order as settings_v2 (the
  environment, the ``.env`` file, the secrets directory; :mod:`montage.core.envfile`), else
  ``var/flags.json``; a relative path is taken from ``root``.  So ``montage flags set``, the service,
  the worker, the reaper and the toolkit's sessions all agree on one file without loading settings.
* **Which**: :data:`REGISTRY` lists every flag with its type, default, owner and meaning; setting a
  name that is not there is refused (a typo must not silently do nothing).
* **What a value means**: :func:`truthy` accepts ``true/false``, ``1/0``, ``yes/no``, ``on/off`` as
  strings (any case, surrounding blanks ignored), JSON booleans and the integers 0 and 1, and
  rejects anything else with an error naming the flag and the value.  Every component (settings,
  nox/invoke sessions, the perf guard, the API, the worker) reads flags through :func:`enabled`.

The database mirror (the store the service reads per request) lives in :mod:`montage.db.flagstore`;
its ``set_flag`` writes both stores.  Writes here are atomic (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from montage.core.files import atomic_write_bytes, atomic_write_text
from montage.errors import ConfigError, UsageError

ENV_VAR = "MONTAGE_OPS__FLAGS_FILE"
DEFAULT_PATH = Path("var/flags.json")

FlagValue = str | int | float | bool | None
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class FlagError(ConfigError):
    """An unknown flag name or a value that is not one of the accepted forms."""


@dataclass(frozen=True)
class FlagSpec:
    name: str
    type: type  # bool: the truthiness rule; int: a TCP port (see :func:`port`)
    default: bool | int | None
    owner: str
    description: str


REGISTRY: dict[str, FlagSpec] = {
    spec.name: spec
    for spec in (
        FlagSpec("USE_SETTINGS_V2", bool, True, "montage.settings (phase 3)",
                 "false selects the deprecated legacy settings loader (flat MONTAGE_FFMPEG, DATABASE_URL, ...)"),
        FlagSpec("PERF_GUARD_ENABLED", bool, True, "montage.ops.perf (phase 7)",
                 "false disables the perf guard (nox -s perf, invoke perf.guard, the perf_guard check)"),
        FlagSpec("SUBMISSIONS_PAUSED", bool, False, "montage.service.public",
                 "true makes POST /v1/public/jobs answer 503 submissions_paused"),
        FlagSpec("WORKERS_PAUSED", bool, False, "montage.workers.worker", "true stops workers claiming new jobs"),
        FlagSpec("ZOMBIE_REAPER_ENABLED", bool, True, "montage.runtime (phase 6)",
                 "false disables the service's orphan reaper (phase 6 rollback)"),
        FlagSpec("API_SPLIT_ADMIN_PORT", int, None, "montage.service.split (phase 4)",
                 "a port serves /v1/admin/* as a separate ASGI app there (phase 4 rollback); null/false: merged app"),
    )
}  # fmt: skip


def flags_path(
    explicit: Path | str | None = None, *, environ: Mapping[str, str] | None = None, root: Path | None = None
) -> Path:
    """The flags file: ``explicit`` if given, else ``MONTAGE_OPS__FLAGS_FILE`` as settings_v2 would read
    it (environment, then the ``.env`` file, then the secrets directory), else ``var/flags.json``.

    A relative path is taken from ``root`` when given (the repository a check runs in; its ``.env``
    is then ``root/.env``), else from the current directory.
    """
    from montage.core.envfile import lookup

    if explicit:
        path = Path(explicit)
    else:
        found = lookup(ENV_VAR, environ, root)
        path = Path(found[0]) if found is not None else DEFAULT_PATH
    return root / path if root is not None and not path.is_absolute() else path


def spec(name: str) -> FlagSpec:
    """The registered flag ``name``; :class:`FlagError` listing the known names otherwise."""
    found = REGISTRY.get(name)
    if found is None:
        raise FlagError(f"unknown flag {name!r}; known flags: {', '.join(sorted(REGISTRY))}.")
    return found


def truthy(name: str, value: object, where: str = "") -> bool:
    """The one truthiness rule (see the module docstring); ``where`` is added to the error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    origin = f" ({where})" if where else ""
    raise FlagError(
        f"flag {name}={json.dumps(value)}{origin} is not a boolean; expected true/false, 1/0, yes/no or on/off."
    )


def port(name: str, value: object, where: str = "") -> int | None:
    """A port flag's value: an integer 0..65535 (0 picks a free port), or None for "off"
    (null, false, "off", "no", "none" or "")."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        word = value.strip().lower()
        if word in {"", "off", "no", "none", "null", "false"}:
            return None
        if word.isdigit():
            value = int(word)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    origin = f" ({where})" if where else ""
    raise FlagError(
        f"flag {name}={json.dumps(value)}{origin} is not a port; expected an integer 0..65535, or null/false for off."
    )


def validate(name: str, value: object, where: str = "") -> bool | int | None:
    """The value a known flag is stored as (a JSON boolean, or a port number / null), or :class:`FlagError`."""
    if spec(name).type is int:
        return port(name, value, where)
    return truthy(name, value, where)


def enabled(flags: Mapping[str, Any], name: str, where: str = "") -> bool:
    """Boolean flag ``name`` in ``flags`` (a file's or the table's contents); the registry default when unset."""
    value = flags.get(name)
    if value is None:
        return bool(spec(name).default)
    return truthy(name, value, where)


def file_port(path: Path, name: str) -> int | None:
    """Port flag ``name`` as the flags file at ``path`` sets it (None when unset or off)."""
    return port(name, read_flags(path).get(name), f"flags file {path}")


def read_flags(path: Path) -> dict[str, Any]:
    """The flags stored in ``path``; an absent file means no flags."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{path}:{exc.lineno}:{exc.colno}: the flags file is not valid JSON ({exc.msg}); "
            "expected an object of flag names to values."
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the flags file must hold a JSON object of flag names to values.")
    return data


def file_enabled(path: Path, name: str) -> bool:
    """Flag ``name`` as the flags file at ``path`` sets it (the registry default when unset)."""
    return enabled(read_flags(path), name, f"flags file {path}")


def write_flag(path: Path, name: str, value: FlagValue) -> bytes | None:
    """Set one flag in the file atomically (after :func:`validate`); returns the file's previous bytes
    (None: there was no file), for :func:`restore_file`."""
    flags = read_flags(path)
    try:
        previous: bytes | None = path.read_bytes()
    except FileNotFoundError:
        previous = None
    flags[name] = value
    _write(path, flags)
    return previous


def restore_file(path: Path, previous: bytes | None) -> None:
    """Undo :func:`write_flag`: put the previous bytes back, or remove the file it created."""
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write_bytes(path, previous)


def _write(path: Path, flags: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(dict(flags), indent=2, sort_keys=True) + "\n")


def parse_value(raw: str) -> FlagValue:
    """A command-line value: a JSON scalar (``0``, ``false``, ``"no"``), else the string itself."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise UsageError(f"flag value {raw!r} must be a scalar (string, number, true/false or null).")
