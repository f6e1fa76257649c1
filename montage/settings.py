"""Montage configuration: settings_v2 (pydantic-settings) and the deprecated legacy loader.

settings_v2 reads, from highest to lowest precedence:

1. values passed by the command line (``load_settings(overrides=...)``),
2. environment variables ``MONTAGE_<SECTION>__<FIELD>`` (e.g. ``MONTAGE_DB__URL``),
3. a ``.env`` file in the working directory (same names; ``MONTAGE_ENV_FILE`` picks another),
4. secrets files: one file per value named like the variable, in ``MONTAGE_SECRETS_DIR``
   (default ``/run/secrets`` when it exists),
5. the defaults below.

``USE_SETTINGS_V2=false`` (environment, or the ``USE_SETTINGS_V2`` flag in the flags file) selects
the legacy loader instead: flat names such as ``MONTAGE_FFMPEG`` and ``DATABASE_URL``.  It is the
rollback path of roadmap phase 3 and is deprecated.

Nothing here runs at import time; call :func:`load_settings`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from montage.errors import ConfigError

ENV_PREFIX = "MONTAGE_"
NESTED_DELIMITER = "__"
DEFAULT_SECRETS_DIR = Path("/run/secrets")

ConfigSourceName = Literal["settings_v2", "legacy"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


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
    lra: float = Field(11.0, ge=1, le=50)
    resolve_module: Path | None = Field(
        None, description="path of DaVinci Resolve's scripting module (DaVinciResolveScript.py)"
    )


class ServiceSettings(_Section):
    """HTTP service and embedded workers."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    workers: int = Field(1, ge=0, le=32, description="embedded worker processes")
    media_root: Path = Field(Path("var/media"), description="JSON job submissions must name files inside it")
    upload_max_mb: int = Field(2048, ge=1)
    job_timeout_s: float = Field(3600.0, gt=0)
    retention_hours: float = Field(72.0, gt=0)
    require_key_for_public: bool = False
    log_file: Path | None = None
    drain_grace_s: float = Field(30.0, ge=0)
    executor: Literal["montage-run", "ffmpeg-trim"] = Field(
        "montage-run",
        description="how a worker renders a job: `montage run` in a child process, or a plain ffmpeg trim (demo)",
    )
    executor_realtime: bool = Field(False, description="ffmpeg-trim reads its input at native speed (-re)")
    lease_s: float = Field(60.0, gt=0, description="a claimed job is re-queued if its worker is silent this long")
    heartbeat_s: float = Field(10.0, gt=0, description="how often a worker renews its lease")
    poll_s: float = Field(1.0, gt=0, description="idle workers look for queued jobs this often")
    max_attempts: int = Field(3, ge=1, le=100, description="claims per job before it fails")


class DbSettings(_Section):
    """Primary database."""

    url: SecretStr = Field(SecretStr("sqlite+aiosqlite:///var/montage.db"), description="SQLAlchemy URL")
    echo: bool = False
    pool_size: int = Field(5, ge=1, le=100)
    connect_timeout_s: float = Field(5.0, gt=0)


class ReplicaSettings(_Section):
    """Optional read replica."""

    url: SecretStr | None = None
    read_fraction: float = Field(0.05, ge=0.0, le=1.0)


class MemorySettings(_Section):
    """Memory safeguards."""

    limit_mb: int | None = Field(None, ge=64, description="override the detected cgroup/host limit")
    reserve_mb: int = Field(256, ge=0)
    job_estimate_mb: int = Field(600, ge=1)


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
    flags_file: Path = Path("var/flags.json")


class Settings(BaseSettings):
    """The effective Montage configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    data_dir: Path = Field(Path("var"), description="where the database, uploads and results live")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    media: MediaSettings = MediaSettings()
    service: ServiceSettings = ServiceSettings()
    db: DbSettings = DbSettings()
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
        return init_settings, env_settings, dotenv_settings, file_secret_settings


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
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; expected true or false.")


def use_settings_v2(environ: Mapping[str, str] | None = None, flags_file: Path | None = None) -> bool:
    """Whether settings_v2 is selected: ``USE_SETTINGS_V2`` env var, else the flags file, else true."""
    env = os.environ if environ is None else environ
    raw = env.get("USE_SETTINGS_V2")
    if raw is not None:
        return _truthy(raw, "USE_SETTINGS_V2")
    from montage.flags import read_flags

    path = flags_file or Path(env.get("MONTAGE_OPS__FLAGS_FILE", OpsSettings().flags_file))
    value = read_flags(path).get("USE_SETTINGS_V2")
    if value is None:
        return True
    return _truthy(str(value), f"USE_SETTINGS_V2 (flags file {path})")


def _secrets_dir(environ: Mapping[str, str]) -> Path | None:
    raw = environ.get("MONTAGE_SECRETS_DIR")
    if raw:
        path = Path(raw)
        if not path.is_dir():
            raise ConfigError(f"MONTAGE_SECRETS_DIR={raw!r} is not a directory.")
        return path
    return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, dotted + ".")
        else:
            yield dotted, value


def _deep_merge(low: dict[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _env_var_for(dotted: str) -> str:
    return ENV_PREFIX + dotted.replace(".", NESTED_DELIMITER).upper()


def _raise_config_error(exc: ValidationError, origins: Mapping[str, str], legacy: bool) -> None:
    problems = []
    for err in exc.errors():
        dotted = ".".join(str(p) for p in err["loc"])
        origin = origins.get(dotted, "default")
        name = origin.split(" ", 1)[-1] if legacy else _env_var_for(dotted)
        problems.append(f"{name} (setting {dotted}, from {origin}): {err['msg']}; got {err.get('input')!r}")
    raise ConfigError("Invalid configuration: " + "; ".join(problems) + ".")


def _load_v2(overrides: Mapping[str, Any], environ: Mapping[str, str]) -> LoadedSettings:
    env_file = environ.get("MONTAGE_ENV_FILE", ".env")
    secrets_dir = _secrets_dir(environ)
    layers: list[tuple[str, dict[str, Any]]] = []
    if secrets_dir is not None:
        layers.append((f"secrets file in {secrets_dir}", SecretsSettingsSource(Settings, secrets_dir=secrets_dir)()))
    if Path(env_file).is_file():
        layers.append((f"{env_file} file", DotEnvSettingsSource(Settings, env_file=env_file)()))
    env_source = EnvSettingsSource(Settings)
    env_source.env_vars = {k.lower(): v for k, v in environ.items()}
    layers.append(("environment", env_source()))
    layers.append(("command line", dict(overrides)))

    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for label, values in layers:
        merged = _deep_merge(merged, values)
        for dotted, _ in _flatten(values):
            origins[dotted] = label if label != "environment" else f"environment {_env_var_for(dotted)}"
    try:
        settings = Settings.model_validate(merged) if merged else Settings()
    except ValidationError as exc:
        _raise_config_error(exc, origins, legacy=False)
        raise  # unreachable; keeps type checkers content
    return LoadedSettings(settings=settings, source="settings_v2", origins=origins)


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
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, dotted in LEGACY_NAMES.items():
        if name in environ:
            node = data
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = environ[name]
            origins[dotted] = f"environment {name}"
    data = _deep_merge(data, overrides)
    for dotted, _ in _flatten(overrides):
        origins[dotted] = "command line"
    try:
        # model_construct would skip validation; validate through the model, without env sources.
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        _raise_config_error(exc, origins, legacy=True)
        raise
    return LoadedSettings(settings=settings, source="legacy", origins=origins)


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
    for dotted, value in _flatten(dumped):
        if isinstance(value, SecretStr):
            shown = "**********" if value.get_secret_value() else ""
        elif value is None:
            shown = ""
        else:
            shown = str(value)
        rows.append((dotted, shown, loaded.origins.get(dotted, "default")))
    return rows
