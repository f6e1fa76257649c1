"""Montage configuration: settings_v2 (pydantic-settings) and the deprecated legacy loader.

settings_v2 reads exactly these sources, from highest to lowest precedence:

1. values passed by the command line (``load_settings(overrides=...)``),
2. environment variables ``MONTAGE_<SECTION>__<FIELD>`` (e.g. ``MONTAGE_DB__URL``) from the
   ``environ`` mapping given (``os.environ`` only when none is given),
3. one ``.env`` file: ``MONTAGE_ENV_FILE`` when set (then ./.env is not read), else ./.env,
4. secrets files in ``MONTAGE_SECRETS_DIR`` (default ``/run/secrets`` when it exists): one file per
   value named like the variable (``montage_db__url``) or per section (``montage_llm``, a JSON object),
5. the defaults below.

Each value's origin (the variable, the ``.env`` file and line, the secrets file, ``command line`` or
``default``) is kept in :class:`LoadedSettings`; an invalid value raises
:class:`~montage.errors.ConfigError` (exit 2) naming where it came from.

``USE_SETTINGS_V2=false`` (environment, or the ``USE_SETTINGS_V2`` flag in the flags file) selects
the legacy loader instead: flat names such as ``MONTAGE_FFMPEG`` and ``DATABASE_URL``.  It is the
rollback path of roadmap phase 3 and is deprecated.

Nothing here runs at import time; call :func:`load_settings`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from montage import _settings_sources as sources
from montage.core.flags import DEFAULT_PATH as DEFAULT_FLAGS_PATH
from montage.errors import ConfigError

ENV_PREFIX = sources.ENV_PREFIX
NESTED_DELIMITER = sources.NESTED_DELIMITER

ConfigSourceName = Literal["settings_v2", "legacy"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# SQLAlchemy's URL grammar (sqlalchemy/engine/url.py, _parse_url), so that loading settings does not
# import SQLAlchemy (about a third of a second); tests/test_settings.py checks that both agree.
_DB_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
        (?:(?:\[(?P<ipv6host>[^/\?]+)\]|(?P<ipv4host>[^/:\?]+))?(?::(?P<port>[^/\?]*))?)?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)


def _check_db_url(value: SecretStr | None) -> SecretStr | None:
    """Parse the URL the way the engine will, so that a bad one fails at load time, naming its source."""
    if value is None or not value.get_secret_value():
        return value
    match = _DB_URL.match(value.get_secret_value())
    if match is None:
        raise ValueError(
            "not a database URL; expected e.g. sqlite+aiosqlite:///var/montage.db or "
            "postgresql+asyncpg://user@host:5432/montage"
        )
    try:
        if match["port"] is not None:
            int(match["port"])  # as SQLAlchemy does, so exactly what it accepts passes
    except ValueError:
        raise ValueError("its port is not a number; expected e.g. postgresql+asyncpg://user@host:5432/db") from None
    return value


def check_database_url(url: str, name: str) -> None:
    """Raise :class:`ConfigError` naming ``name`` (e.g. ``--url``) when ``url`` does not parse."""
    try:
        _check_db_url(SecretStr(url))
    except ValueError as exc:
        raise ConfigError(f"{name} {sources.shown(url, secret=True)}: {exc}.") from None


class MediaSettings(_Section):
    """ffmpeg access and rendering defaults."""

    ffmpeg: str | None = Field(None, description="ffmpeg binary (path or name); default: PATH, then the bundled one")
    ffprobe: str | None = Field(None, description="ffprobe binary; default: PATH, else PyAV probes")
    threads: int = Field(2, ge=1, le=64, description="encoder/decoder threads")
    timeout_s: float = Field(3600.0, gt=0, description="timeout of one ffmpeg invocation")
    cache_dir: Path = Field(Path("var/cache"), description="analysis cache")
    preset: str = Field("veryfast", pattern=r"^(ultrafast|superfast|veryfast|faster|fast|medium|slow|slower|veryslow)$")
    crf: int = Field(23, ge=0, le=51)
    loudness_lufs: float = Field(-16.0, ge=-70, le=-5, description="integrated loudness target")
    true_peak_db: float = Field(-1.5, ge=-9, le=0)
    resolve_module: Path | None = Field(
        None, description="path of DaVinci Resolve's scripting module (DaVinciResolveScript.py)"
    )


class ServiceSettings(_Section):
    """HTTP service and embedded workers."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    split_admin_port: int | None = Field(
        None, ge=0, le=65535, description="split mode: /v1/admin/* as its own app and process on this port"
    )
    workers: int = Field(1, ge=0, le=32, description="embedded worker processes")
    media_root: Path = Field(Path("var/media"), description="JSON job submissions must name files inside it")
    upload_max_mb: int = Field(2048, ge=1)
    job_timeout_s: float = Field(3600.0, gt=0)
    retention_hours: float = Field(72.0, gt=0)
    require_key_for_public: bool = False
    log_file: Path | None = None
    drain_grace_s: float = Field(30.0, ge=0)
    read_timeout_s: float = Field(
        30.0, gt=0, description="a request head must arrive within this, and each body chunk within this of the last"
    )
    executor: Literal["montage-run", "ffmpeg-trim"] = Field(
        "montage-run",
        description="how a worker renders a job: `montage run` in a child process, or a plain ffmpeg trim (demo)",
    )
    executor_realtime: bool = Field(False, description="ffmpeg-trim reads its input at native speed (-re)")
    lease_s: float = Field(60.0, gt=0, description="a claimed job is re-queued if its worker is silent this long")
    heartbeat_s: float = Field(10.0, gt=0, description="how often a worker renews its lease")
    poll_s: float = Field(1.0, gt=0, description="idle workers look for queued jobs this often")
    max_attempts: int = Field(3, ge=1, le=100, description="claims per job before it fails")
    engine: Literal["local", "celery"] = Field(
        "local", description="who dispatches jobs: embedded workers polling the database, or Celery tasks"
    )


_BROKER_SCHEMES = ("redis", "rediss")


def _check_broker_url(value: SecretStr | None) -> SecretStr | None:
    """A Redis URL (``redis://[:password@]host:port/db``), checked at load time without importing Celery."""
    if value is None or not value.get_secret_value():
        return value
    from urllib.parse import urlsplit

    expected = "expected e.g. redis://localhost:6379/0 or redis://:PASSWORD@host:6379/0"
    try:
        parts = urlsplit(value.get_secret_value())
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        raise ValueError(f"its port is not a number from 0 to 65535; {expected}") from None
    if parts.scheme not in _BROKER_SCHEMES:
        raise ValueError(f"not a Redis URL (scheme {parts.scheme or 'missing'!r}); {expected}")
    if not parts.hostname:
        raise ValueError(f"it names no host; {expected}")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"its database {db!r} is not a number; {expected}")
    return value


class CelerySettings(_Section):
    """The celery engine (``service.engine = celery``): broker and reliability settings."""

    broker_url: SecretStr | None = Field(None, description="Redis broker URL (a secret: it may hold a password)")
    queue: str = Field("montage", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the queue render tasks go to")
    embedded_workers: int = Field(0, ge=0, le=32, description="`montage serve` also starts this many Celery workers")
    relay_after_s: float = Field(
        60.0, gt=0, description="a queued job not dispatched for this long is published again (doubling per retry)"
    )
    relay_interval_s: float = Field(5.0, gt=0, description="how often the relay scans the queued jobs")
    publish_timeout_s: float = Field(3.0, gt=0, description="bound on one publish; past it the relay takes over")
    max_memory_per_child_mb: int = Field(
        2048, ge=64, description="a worker child whose RSS exceeds this is replaced after its task"
    )
    visibility_timeout_s: float | None = Field(
        None, gt=0, description="Redis redelivers an unacknowledged task after this; default job_timeout_s + 600"
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="`montage worker --engine celery` serves /metrics on this port"
    )

    @field_validator("broker_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_broker_url(value)


class DbSettings(_Section):
    """Primary database."""

    url: SecretStr = Field(SecretStr("sqlite+aiosqlite:///var/montage.db"), description="SQLAlchemy URL")
    echo: bool = False
    pool_size: int = Field(5, ge=1, le=100)
    connect_timeout_s: float = Field(5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_db_url(value)


class ReplicaSettings(_Section):
    """Optional read replica."""

    url: SecretStr | None = None
    read_fraction: float = Field(0.05, ge=0.0, le=1.0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_db_url(value)


class MemorySettings(_Section):
    """Memory safeguards."""

    limit_mb: int | None = Field(None, ge=64, description="override the detected cgroup/host limit")
    reserve_mb: int = Field(256, ge=0)
    job_estimate_mb: int = Field(600, ge=1)
    admission: bool = Field(True, description="claim a job only when its estimate fits (montage/runtime/admission.py)")


class LlmSettings(_Section):
    """Optional LLM highlight selector."""

    provider: Literal["none", "anthropic", "gemini"] = "none"
    anthropic_api_key: SecretStr | None = None
    gemini_api_key: SecretStr | None = None
    model: str | None = None
    base_url: str | None = Field(None, description="override the provider's API base URL")
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    spend_cap_usd: float = Field(0.50, ge=0)


class OpsSettings(_Section):
    """Phase-gate toolkit."""

    phases_dir: Path = Path("phases")
    bundles_dir: Path = Path("proofs")
    flags_file: Path = DEFAULT_FLAGS_PATH  # montage.core.flags.flags_path resolves it
    # Signed bundles (montage.ops.signing reads these same MONTAGE_OPS__* names): the private key's file
    # (default $XDG_CONFIG_HOME/montage/signing-key.pem), or the PEM itself (a CI secret), and whether an
    # unsigned/untrusted PASS satisfies depends_on (auto: not once proofs/keys/ holds a key).
    signing_key: Path | None = None
    signing_key_pem: SecretStr | None = None
    require_signatures: Literal["auto", "always", "never"] = "auto"


class Settings(BaseSettings):
    """The effective Montage configuration.

    Construct it through :func:`load_settings`.  Its only pydantic-settings source is the values it is
    given: the loader reads the environment, ``.env`` and secrets itself, from exactly what it was
    given, so that every value's origin is known and nothing is read behind its back.
    """

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    data_dir: Path = Field(Path("var"), description="where the database, uploads and results live")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    media: MediaSettings = MediaSettings()
    service: ServiceSettings = ServiceSettings()
    db: DbSettings = DbSettings()
    celery: CelerySettings = CelerySettings()
    replica: ReplicaSettings = ReplicaSettings()
    memory: MemorySettings = MemorySettings()
    llm: LlmSettings = LlmSettings()
    ops: OpsSettings = OpsSettings()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the given values: pydantic-settings' env/.env/secrets sources would read os.environ and
        # ./.env behind load_settings' back (an explicit environ, MONTAGE_ENV_FILE and origins all lied).
        return (init_settings,)


@dataclass(frozen=True)
class LoadedSettings:
    """Settings plus provenance: which loader ran and where each value came from."""

    settings: Settings
    source: ConfigSourceName
    origins: Mapping[str, str] = field(default_factory=dict)

    @property
    def log_line(self) -> str:
        """The exact start-up line every service entry point logs first."""
        return f"Config source={self.source}"


def _truthy(raw: str, name: str) -> bool:
    from montage.core.flags import truthy

    return truthy(name, raw)


def use_settings_v2(environ: Mapping[str, str] | None = None, flags_file: Path | None = None) -> bool:
    """Whether settings_v2 is selected: ``USE_SETTINGS_V2`` env var, else the flags file, else true."""
    env = os.environ if environ is None else environ
    raw = env.get("USE_SETTINGS_V2")
    if raw is not None:
        return _truthy(raw, "USE_SETTINGS_V2")
    from montage.core.flags import file_enabled, flags_path

    return file_enabled(flags_path(flags_file, environ=env), "USE_SETTINGS_V2")


def _secrets_dir(environ: Mapping[str, str]) -> Path | None:
    from montage.core.envfile import secrets_dir  # one rule for settings and the flags-file path

    return secrets_dir(environ)


def _env_file(environ: Mapping[str, str]) -> Path | None:
    """``MONTAGE_ENV_FILE`` when set (and then ./.env is not read), else ./.env; None when absent."""
    from montage.core.envfile import env_file

    return env_file(environ)


@cache
def _schema() -> sources.Schema:
    out: dict[str, frozenset[str] | None] = {}
    for name, info in Settings.model_fields.items():
        kind = info.annotation
        out[name] = frozenset(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else None
    return out


@cache
def _secret_fields() -> frozenset[str]:
    out: set[str] = set()
    for name, info in Settings.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            for sub_name, sub in kind.model_fields.items():
                if sub.annotation is SecretStr or SecretStr in get_args(sub.annotation):
                    out.add(f"{name}.{sub_name}")
    return frozenset(out)


def _validated(layer: sources.Layer, source: ConfigSourceName) -> LoadedSettings:
    try:
        settings = Settings(**layer.values)
    except ValidationError as exc:
        raise sources.config_error(exc, layer.origins, _secret_fields()) from None
    origins = {dotted: origin.label for dotted, origin in layer.origins.items()}
    return LoadedSettings(settings=settings, source=source, origins=origins)


# Read from the environment only: they choose the loader and its files, so a file cannot set them.
ENVIRONMENT_ONLY = ("USE_SETTINGS_V2", "MONTAGE_ENV_FILE", "MONTAGE_SECRETS_DIR")


def _load_v2(overrides: Mapping[str, Any], environ: Mapping[str, str]) -> LoadedSettings:
    schema = _schema()
    layers = []  # lowest precedence first
    secrets_dir = _secrets_dir(environ)
    if secrets_dir is not None:
        layers.append(sources.secrets_layer(secrets_dir, schema))
    env_file = _env_file(environ)
    if env_file is not None:
        layers.append(sources.dotenv_layer(env_file, schema, ENVIRONMENT_ONLY))
    layers.append(sources.environment_layer(environ, schema))
    layers.append(sources.command_line_layer(overrides))
    return _validated(sources.merge(layers), "settings_v2")


# Flat names understood by the legacy loader: environment name -> dotted setting.
LEGACY_NAMES: dict[str, str] = {
    "MONTAGE_FFMPEG": "media.ffmpeg",
    "MONTAGE_FFPROBE": "media.ffprobe",
    "MONTAGE_THREADS": "media.threads",
    "MONTAGE_CACHE_DIR": "media.cache_dir",
    "DATABASE_URL": "db.url",
    "REPLICA_DATABASE_URL": "replica.url",
    "REPLICA_READ_FRACTION": "replica.read_fraction",
    "MONTAGE_HOST": "service.host",
    "MONTAGE_PORT": "service.port",
    "MONTAGE_MEDIA_ROOT": "service.media_root",
    "MONTAGE_DATA_DIR": "data_dir",
    "MONTAGE_LOG_LEVEL": "log_level",
    "ANTHROPIC_API_KEY": "llm.anthropic_api_key",
    "GEMINI_API_KEY": "llm.gemini_api_key",
    "MEMORY_LIMIT_MB": "memory.limit_mb",
}


def _load_legacy(overrides: Mapping[str, Any], environ: Mapping[str, str]) -> LoadedSettings:
    warnings.warn(
        "USE_SETTINGS_V2=false selects the deprecated legacy configuration loader; "
        "it will be removed once phase 3's canary passes.",
        DeprecationWarning,
        stacklevel=3,
    )
    flat = sources.Layer()
    for name, dotted in LEGACY_NAMES.items():
        if name in environ:
            node = flat.values
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = environ[name]
            flat.origins[dotted] = sources.Origin(f"environment {name}", name)
    return _validated(sources.merge([flat, sources.command_line_layer(overrides)]), "legacy")


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> LoadedSettings:
    """Load the effective configuration.

    ``overrides`` are command-line values as a nested mapping (``{"service": {"port": 9000}}``);
    they beat every other source.  Raises :class:`~montage.errors.ConfigError` naming the
    variable for an invalid value.
    """
    env = dict(os.environ if environ is None else environ)
    ov = dict(overrides or {})
    if use_settings_v2(env):
        return _load_v2(ov, env)
    return _load_legacy(ov, env)


def masked_view(loaded: LoadedSettings) -> list[tuple[str, str, str]]:
    """(dotted name, display value, origin) for every leaf; secrets masked."""
    rows: list[tuple[str, str, str]] = []
    dumped = loaded.settings.model_dump()
    for dotted, value in sources.flatten(dumped):
        if isinstance(value, SecretStr):
            shown = "**********" if value.get_secret_value() else ""
        elif value is None:
            shown = ""
        else:
            shown = str(value)
        rows.append((dotted, shown, loaded.origins.get(dotted, sources.DEFAULT)))
    return rows
