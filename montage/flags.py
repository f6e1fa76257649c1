"""The flags file: switches the app reads at start-up (e.g. ``USE_SETTINGS_V2``).

The phase files' rollback ``set_flag`` steps write here through ``montage flags set``.
Writes are atomic (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from montage.core.files import atomic_write_text
from montage.errors import UsageError

FlagValue = str | int | float | bool | None


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


def write_flag(path: Path, name: str, value: FlagValue) -> dict[str, Any]:
    """Set one flag atomically and return the new contents."""
    if not name or not name.replace("_", "").replace(".", "").isalnum():
        raise UsageError(f"flag name {name!r} is invalid; expected letters, digits, '_' or '.'.")
    flags = read_flags(path)
    flags[name] = value
    atomic_write_text(path, json.dumps(flags, indent=2, sort_keys=True) + "\n")
    return flags


def parse_flag_value(raw: str) -> FlagValue:
    """Interpret a command-line flag value: JSON scalars, else the string itself."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise UsageError(f"flag value {raw!r} must be a scalar (string, number, true/false or null).")
