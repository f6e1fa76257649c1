from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from montage.errors import ConfigError
from montage.flags import read_flags, write_flag
from montage.settings import load_settings, masked_view

pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults_are_settings_v2() -> None:
    loaded = load_settings(environ={})
    assert loaded.source == "settings_v2"
    assert loaded.log_line == "Config source=settings_v2"
    assert loaded.settings.db.url.get_secret_value().startswith("sqlite+aiosqlite:///")
    assert loaded.settings.media.loudness_lufs == -16.0


def test_nested_env_and_precedence(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "montage_llm").write_text(json.dumps({"anthropic_api_key": "from-secret-file", "timeout_s": 7}))
    (tmp_path / ".env").write_text("MONTAGE_SERVICE__PORT=8100\nMONTAGE_LLM__TIMEOUT_S=9\nMONTAGE_MEDIA__CRF=30\n")
    env = {"MONTAGE_SECRETS_DIR": str(secrets), "MONTAGE_SERVICE__PORT": "8200", "MONTAGE_MEDIA__THREADS": "3"}
    loaded = load_settings(overrides={"media": {"threads": 4}}, environ=env)
    s = loaded.settings
    assert s.media.threads == 4  # command line beats environment
    assert loaded.origins["media.threads"] == "command line"
    assert s.service.port == 8200  # environment beats .env
    assert loaded.origins["service.port"] == "environment MONTAGE_SERVICE__PORT"
    assert s.media.crf == 30  # .env beats default
    assert loaded.origins["media.crf"] == ".env file"
    assert s.llm.timeout_s == 9  # .env beats secrets file
    assert s.llm.anthropic_api_key is not None
    assert s.llm.anthropic_api_key.get_secret_value() == "from-secret-file"
    assert loaded.origins["llm.anthropic_api_key"].startswith("secrets file")


def test_secrets_are_masked() -> None:
    loaded = load_settings(environ={"MONTAGE_LLM__GEMINI_API_KEY": "sk-very-secret"})
    rows = {name: (value, origin) for name, value, origin in masked_view(loaded)}
    assert rows["llm.gemini_api_key"] == ("**********", "environment MONTAGE_LLM__GEMINI_API_KEY")
    assert "sk-very-secret" not in json.dumps(rows)


def test_invalid_value_names_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"MONTAGE_SERVICE__PORT": "seventy"})
    assert "MONTAGE_SERVICE__PORT" in str(info.value)
    assert "'seventy'" in str(info.value)


def test_legacy_loader_reads_flat_names() -> None:
    env = {"USE_SETTINGS_V2": "false", "MONTAGE_FFMPEG": "/opt/ff/ffmpeg", "DATABASE_URL": "sqlite+aiosqlite:///x.db"}
    with pytest.warns(DeprecationWarning):
        loaded = load_settings(environ=env)
    assert loaded.source == "legacy"
    assert loaded.log_line == "Config source=legacy"
    assert loaded.settings.media.ffmpeg == "/opt/ff/ffmpeg"
    assert loaded.settings.db.url.get_secret_value() == "sqlite+aiosqlite:///x.db"
    assert loaded.origins["db.url"] == "environment DATABASE_URL"


def test_legacy_invalid_value_names_flat_variable() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ConfigError, match="MONTAGE_PORT"):
            load_settings(environ={"USE_SETTINGS_V2": "0", "MONTAGE_PORT": "x"})


def test_flags_file_selects_legacy(tmp_path: Path) -> None:
    flags = tmp_path / "flags.json"
    write_flag(flags, "USE_SETTINGS_V2", False)
    assert read_flags(flags) == {"USE_SETTINGS_V2": False}
    with pytest.warns(DeprecationWarning):
        loaded = load_settings(environ={"MONTAGE_OPS__FLAGS_FILE": str(flags)})
    assert loaded.source == "legacy"


def test_bad_use_settings_v2_value() -> None:
    with pytest.raises(ConfigError, match="USE_SETTINGS_V2"):
        load_settings(environ={"USE_SETTINGS_V2": "maybe"})
