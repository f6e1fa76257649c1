"""Which ``.env`` file and secrets directory a Montage process reads, and one value from each.

The rules settings_v2 applies (see :mod:`montage.settings`), kept here so the parts that must not load
settings (``montage/core``, the toolkit: nox/invoke sessions, the perf guard) find the same files:

* the ``.env`` file: ``MONTAGE_ENV_FILE`` when set (empty: none; then ``./.env`` is not read), else
  ``./.env`` (relative to ``root`` when given, else the current directory);
* the secrets directory: ``MONTAGE_SECRETS_DIR`` when set (empty: none), else ``/run/secrets`` when
  it exists; one file per value (``montage_ops__flags_file``) or per section (``montage_ops``, a JSON
  object).

:func:`lookup` reads one ``MONTAGE_<SECTION>__<FIELD>`` name through environment, ``.env`` and secrets
in settings' order.  Its ``.env`` reader is deliberately small (stdlib only, no pydantic or
python-dotenv here): ``[export] NAME=value`` lines, values bare (a `` #`` starts a comment) or in
single or double quotes.  settings parses the whole file with python-dotenv; a test checks that both
read the same value for the spellings a path takes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from montage.errors import ConfigError

ENV_FILE_VAR = "MONTAGE_ENV_FILE"
SECRETS_DIR_VAR = "MONTAGE_SECRETS_DIR"
DEFAULT_ENV_FILE = Path(".env")
DEFAULT_SECRETS_DIR = Path("/run/secrets")


def env_file(environ: Mapping[str, str] | None = None, root: Path | None = None) -> Path | None:
    """The ``.env`` file to read (see the module docstring); None when there is none.

    A path that exists but is not a regular file is a :class:`ConfigError` naming it.
    """
    env = os.environ if environ is None else environ
    named = env.get(ENV_FILE_VAR)
    if named == "":
        return None  # MONTAGE_ENV_FILE= (empty): no .env file at all
    path = Path(DEFAULT_ENV_FILE if named is None else named)
    if root is not None and not path.is_absolute():
        path = root / path
    if not path.exists():
        return None
    if not path.is_file():
        what = f"{ENV_FILE_VAR}={named!r}" if named is not None else f"{path.absolute()}"
        raise ConfigError(f"{what} is not a regular file; expected a .env file of NAME=value lines.")
    return path


def secrets_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The secrets directory to read (see the module docstring); None when there is none."""
    env = os.environ if environ is None else environ
    raw = env.get(SECRETS_DIR_VAR)
    if raw == "":
        return None  # MONTAGE_SECRETS_DIR= (empty): no secrets directory at all
    if raw is not None:
        path = Path(raw)
        if not path.is_dir():
            raise ConfigError(f"{SECRETS_DIR_VAR}={raw!r} is not a directory.")
        return path
    return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None


def _unquote(raw: str) -> str:
    value = raw.strip()
    if value[:1] in {"'", '"'}:
        quote = value[0]
        end = value.find(quote, 1)
        while quote == '"' and end > 0 and value[end - 1] == "\\":
            end = value.find(quote, end + 1)
        if end > 0:
            inner = value[1:end]
            return inner.replace('\\"', '"').replace("\\\\", "\\") if quote == '"' else inner
    hash_at = value.find(" #")
    return (value[:hash_at] if hash_at >= 0 else value).strip()


def dotenv_value(path: Path, name: str) -> str | None:
    """The value ``name`` gets in the ``.env`` file at ``path`` (the last assignment wins); None if unset."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.absolute()}: cannot read the .env file ({exc}).") from None
    found: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, raw = stripped.partition("=")
        if sep and key.strip() == name:
            found = _unquote(raw)
    return found


def secret_value(directory: Path, name: str) -> str | None:
    """``MONTAGE_<SECTION>__<FIELD>`` from a secrets directory: its own file, else its section's JSON file."""
    lower = name.lower()
    section, _, field = lower.removeprefix("montage_").partition("__")
    files = {p.name.lower(): p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")}
    try:
        if lower in files:
            return files[lower].read_text(encoding="utf-8").strip()
        whole = files.get(f"montage_{section}")
        if whole is not None and field:
            data = json.loads(whole.read_text(encoding="utf-8"))
            value = data.get(field) if isinstance(data, dict) else None
            return None if value is None else str(value)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"secrets directory {directory}: cannot read {name} ({exc}).") from None
    return None


def lookup(name: str, environ: Mapping[str, str] | None = None, root: Path | None = None) -> tuple[str, str] | None:
    """``(value, origin)`` of ``name`` from the environment, else the ``.env`` file, else the secrets
    directory (settings_v2's order); None when none of them sets it."""
    env = os.environ if environ is None else environ
    if env.get(name):
        return env[name], f"environment {name}"
    dotenv = env_file(env, root)
    if dotenv is not None:
        value = dotenv_value(dotenv, name)
        if value:
            return value, f"env file {dotenv.absolute()} {name}"
    secrets = secrets_dir(env)
    if secrets is not None:
        value = secret_value(secrets, name)
        if value:
            return value, f"secrets directory {secrets} {name}"
    return None
