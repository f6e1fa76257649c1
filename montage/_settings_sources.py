"""Where settings_v2 values come from, read from exactly what each source is given.

Every source (the environment mapping passed to :func:`montage.settings.load_settings`, one ``.env``
file, one secrets directory, the command line) becomes a :class:`Layer`: nested values plus, for
every leaf, the :class:`Origin` that ``montage config show`` and ``/v1/admin/config`` report and an
error message names.  Nothing here reads ``os.environ`` or the working directory on its own: that is
the point (pydantic-settings' own sources did, behind the loader's back).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from montage.errors import ConfigError

ENV_PREFIX = "MONTAGE_"
NESTED_DELIMITER = "__"
COMMAND_LINE = "command line"
DEFAULT = "default"

# top-level name -> the field names of that section, or None for a plain top-level field.
Schema = Mapping[str, frozenset[str] | None]


@dataclass(frozen=True)
class Origin:
    """Where one value came from: ``label`` is what config show prints, ``name`` what the user edits."""

    label: str
    name: str


@dataclass
class Layer:
    """One source's values (nested like the model) and the origin of every leaf (dotted name)."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) for every leaf of a nested mapping."""
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, dotted + ".")
        else:
            yield dotted, value


def deep_merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """``low`` updated by ``high``, section by section."""
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merge(layers: list[Layer]) -> Layer:
    """Merge layers given lowest precedence first; a leaf's origin is the layer that set it last."""
    out = Layer()
    for layer in layers:
        out.values = deep_merge(out.values, layer.values)
        out.origins.update(layer.origins)
    return out


def env_var_for(dotted: str) -> str:
    """``service.port`` -> ``MONTAGE_SERVICE__PORT``."""
    return ENV_PREFIX + dotted.replace(".", NESTED_DELIMITER).upper()


def _target(name: str, schema: Schema, where: str) -> tuple[str, ...] | None:
    """The setting a ``MONTAGE_...`` name addresses; None for names that are not settings at all.

    ``MONTAGE_<SECTION>__<FIELD>`` must name a real field: a typo is an error, not a silent default.
    Names without ``__`` that are not a section or top-level field (``MONTAGE_ENV_FILE``, the legacy
    flat names, other tools' variables) are not ours and are skipped.
    """
    if not name.upper().startswith(ENV_PREFIX):
        return None
    parts = name[len(ENV_PREFIX) :].lower().split(NESTED_DELIMITER)
    if len(parts) == 1:
        return (parts[0],) if parts[0] in schema else None
    section = schema.get(parts[0])
    if len(parts) == 2 and section is not None and parts[1] in section:
        return parts[0], parts[1]
    known = ", ".join(env_var_for(s) + NESTED_DELIMITER + "<FIELD>" for s, f in schema.items() if f is not None)
    if section is not None:
        known = ", ".join(env_var_for(f"{parts[0]}.{f}") for f in sorted(section))
    raise ConfigError(f"{where}: {name} names no setting; expected one of {known}.")


def _put(layer: Layer, path: tuple[str, ...], raw: str, origin: Origin, schema: Schema) -> None:
    if len(path) == 2:
        layer.values.setdefault(path[0], {})[path[1]] = raw
        layer.origins[".".join(path)] = origin
        return
    if schema[path[0]] is None:  # a top-level field such as data_dir
        layer.values[path[0]] = raw
        layer.origins[path[0]] = origin
        return
    # A whole section as one JSON object (the secrets file montage_llm, or MONTAGE_LLM='{...}').
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{origin.name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); expected an "
            f'object of section {path[0]}\'s settings such as {{"{sorted(schema[path[0]] or ["x"])[0]}": ...}}.'
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin.name}: expected a JSON object of section {path[0]}'s settings; got {type(data).__name__}."
        )
    section = layer.values.setdefault(path[0], {})
    for key, value in data.items():
        section[key] = value
        layer.origins[f"{path[0]}.{key}"] = origin


def _layer(items: list[tuple[tuple[str, ...], str, Origin]], schema: Schema) -> Layer:
    layer = Layer()
    # Whole sections first, so a more specific MONTAGE_LLM__TIMEOUT_S in the same source wins.
    for path, raw, origin in sorted(items, key=lambda item: len(item[0])):
        _put(layer, path, raw, origin, schema)
    return layer


def environment_layer(environ: Mapping[str, str], schema: Schema) -> Layer:
    """``MONTAGE_<SECTION>__<FIELD>`` (and ``MONTAGE_<TOP_FIELD>``) from exactly ``environ``."""
    items = []
    for name, raw in environ.items():
        path = _target(name, schema, "environment")
        if path is not None:
            items.append((path, raw, Origin(f"environment {name}", name)))
    return _layer(items, schema)


def dotenv_layer(path: Path, schema: Schema, environment_only: tuple[str, ...] = ()) -> Layer:
    """The same names from one ``.env`` file; a line that does not parse is an error naming it."""
    import io

    from dotenv.parser import parse_stream  # the parser alone: no ${VAR} interpolation from os.environ

    shown = str(path.absolute())
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot read the .env file ({exc}).") from None
    items = []
    for binding in parse_stream(io.StringIO(text)):
        statement = binding.original.string
        # python-dotenv counts from the blank lines before a statement; name the statement's own line.
        line = binding.original.line + statement[: len(statement) - len(statement.lstrip())].count("\n")
        if binding.error or (binding.key is not None and binding.value is None):
            raise ConfigError(
                f"{shown}:{line}: cannot parse {statement.strip()[:80]!r}; expected NAME=value lines "
                "(e.g. MONTAGE_SERVICE__PORT=8000), # comments or blank lines."
            )
        if binding.key is None or binding.value is None:
            continue
        if binding.key.upper() in environment_only:
            raise ConfigError(
                f"{shown}:{line}: {binding.key} is read from the environment only, not from a .env file; "
                f"set it in the environment (e.g. {binding.key.upper()}={binding.value} montage ...)."
            )
        target = _target(binding.key, schema, f"{shown}:{line}")
        if target is not None:
            origin = Origin(f"env file {shown}:{line} {binding.key}", f"{binding.key} ({shown}:{line})")
            items.append((target, binding.value, origin))
    return _layer(items, schema)


def secrets_layer(directory: Path, schema: Schema) -> Layer:
    """One file per value (``montage_db__url``) or per section (``montage_llm`` holding a JSON object)."""
    items = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue  # Kubernetes' ..data links and timestamped directories
        target = _target(entry.name, schema, f"secrets directory {directory}")
        if target is None:
            continue
        try:
            raw = entry.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"secrets file {entry}: cannot be read ({exc}).") from None
        shown = entry.absolute()
        items.append((target, raw, Origin(f"secrets file {shown}", f"secrets file {shown}")))
    return _layer(items, schema)


def command_line_layer(overrides: Mapping[str, Any]) -> Layer:
    layer = Layer(values=dict(overrides))
    for dotted, _ in flatten(overrides):
        layer.origins[dotted] = Origin(COMMAND_LINE, f"the command-line value of {dotted}")
    return layer


_URL_PASSWORD = re.compile(r"(://[^/@:]*:)[^@/]*@")


def shown(value: Any, secret: bool) -> str:
    """``repr(value)``; a secret is hidden, a URL loses its password."""
    if not secret:
        return repr(value)
    if isinstance(value, str) and "://" in value:
        return repr(_URL_PASSWORD.sub(r"\1***@", value))  # the URL without its password
    return "a secret value (not shown)"


def config_error(exc: ValidationError, origins: Mapping[str, Origin], secret_fields: frozenset[str]) -> ConfigError:
    """One paragraph naming, for every invalid value, the variable or file it came from and the value."""
    problems = []
    for err in exc.errors():
        dotted = ".".join(str(p) for p in err["loc"])
        origin = origins.get(dotted) or origins.get(dotted.split(".", 1)[0]) or Origin(DEFAULT, env_var_for(dotted))
        msg = err["msg"]
        problems.append(
            f"{origin.name} (setting {dotted}, from {origin.label}): {msg}; got "
            f"{shown(err.get('input'), dotted in secret_fields)}"
        )
    return ConfigError("Invalid configuration: " + "; ".join(problems) + ".")
