from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from montage.core.flags import read_flags, write_flag
from montage.errors import ConfigError
from montage.settings import load_settings, masked_view

pytestmark = pytest.mark.usefixtures("clean_env")


def child_env(**extra: str) -> dict[str, str]:
    """The real environment minus every Montage variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONTAGE_") and k != "USE_SETTINGS_V2"}
    env.update(extra)
    return env


def config_show(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`montage config show --json` as a user runs it: a real process in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "montage", "config", "show", "--json"],
        env=child_env(**env), cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


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
    dotenv = Path.cwd() / ".env"
    assert s.media.threads == 4  # command line beats environment
    assert loaded.origins["media.threads"] == "command line"
    assert s.service.port == 8200  # environment beats .env
    assert loaded.origins["service.port"] == "environment MONTAGE_SERVICE__PORT"
    assert s.media.crf == 30  # .env beats default
    assert loaded.origins["media.crf"] == f"env file {dotenv}:3 MONTAGE_MEDIA__CRF"
    assert s.llm.timeout_s == 9  # .env beats secrets file
    assert loaded.origins["llm.timeout_s"] == f"env file {dotenv}:2 MONTAGE_LLM__TIMEOUT_S"
    assert s.llm.anthropic_api_key is not None
    assert s.llm.anthropic_api_key.get_secret_value() == "from-secret-file"
    assert loaded.origins["llm.anthropic_api_key"] == f"secrets file {secrets.absolute() / 'montage_llm'}"
    assert "media.preset" not in loaded.origins
    assert dict((n, o) for n, _, o in masked_view(loaded))["media.preset"] == "default"


def test_config_show_names_the_origin_of_each_source(tmp_path: Path) -> None:
    """A value in each source: the real CLI names the variable, the .env file and line, the secrets file."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "montage_llm").write_text('{"timeout_s": 7}')
    (secrets / "montage_db__pool_size").write_text("9\n")  # one file per value, as Docker/Kubernetes mount them
    (tmp_path / ".env").write_text("# local overrides\nMONTAGE_MEDIA__CRF=30\n")
    done = config_show(tmp_path, MONTAGE_SECRETS_DIR=str(secrets), MONTAGE_SERVICE__PORT="8200")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)["settings"]
    cwd = tmp_path.resolve()
    assert shown["service.port"] == {"value": "8200", "origin": "environment MONTAGE_SERVICE__PORT"}
    assert shown["media.crf"] == {"value": "30", "origin": f"env file {cwd / '.env'}:2 MONTAGE_MEDIA__CRF"}
    assert shown["llm.timeout_s"] == {"value": "7.0", "origin": f"secrets file {secrets / 'montage_llm'}"}
    assert shown["db.pool_size"] == {"value": "9", "origin": f"secrets file {secrets / 'montage_db__pool_size'}"}
    assert shown["media.preset"] == {"value": "veryfast", "origin": "default"}


def test_explicit_environ_ignores_the_real_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONTAGE_SERVICE__PORT", "9999")
    monkeypatch.setenv("MONTAGE_MEDIA__CRF", "40")
    loaded = load_settings(environ={"MONTAGE_MEDIA__THREADS": "3"})
    assert loaded.settings.service.port == 8000
    assert loaded.settings.media.crf == 23
    assert loaded.origins == {"media.threads": "environment MONTAGE_MEDIA__THREADS"}
    # ... and with no mapping given, the process environment is the one read.
    assert load_settings().settings.service.port == 9999


def test_env_file_elsewhere_stops_dot_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MONTAGE_MEDIA__CRF=30\n")  # tmp_path is the working directory
    other = tmp_path / "conf" / "prod.env"
    other.parent.mkdir()
    other.write_text("MONTAGE_MEDIA__THREADS=5\n")
    loaded = load_settings(environ={"MONTAGE_ENV_FILE": str(other)})
    assert loaded.settings.media.crf == 23  # ./.env was not read
    assert loaded.settings.media.threads == 5
    assert loaded.origins == {"media.threads": f"env file {other}:1 MONTAGE_MEDIA__THREADS"}
    assert load_settings(environ={}).settings.media.crf == 30  # without MONTAGE_ENV_FILE ./.env counts
    assert load_settings(environ={"MONTAGE_ENV_FILE": ""}).settings.media.crf == 23  # empty: no .env at all


def test_empty_secrets_dir_reads_no_secrets(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "montage_media__crf").write_text("31")
    assert load_settings(environ={"MONTAGE_SECRETS_DIR": str(secrets)}).settings.media.crf == 31
    assert load_settings(environ={"MONTAGE_SECRETS_DIR": ""}).origins == {}


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


def test_legacy_loader_reads_only_flat_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings_v2 name reaches the legacy loader: not the environment, not ./.env, not the real env."""
    (tmp_path / ".env").write_text("MONTAGE_MEDIA__CRF=30\n")
    monkeypatch.setenv("MONTAGE_MEDIA__THREADS", "7")
    env = {"USE_SETTINGS_V2": "false", "MONTAGE_SERVICE__PORT": "9000", "MONTAGE_PORT": "9100"}
    with pytest.warns(DeprecationWarning):
        loaded = load_settings(environ=env)
    s = loaded.settings
    assert (s.service.port, s.media.crf, s.media.threads) == (9100, 23, 2)
    assert loaded.origins == {"service.port": "environment MONTAGE_PORT"}


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


def _bad_secrets_json(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "montage_llm").write_text('{"anthropic_api_key": "sk-1",')
    return {"MONTAGE_SECRETS_DIR": str(tmp_path / "secrets")}


def _bad_secret_value(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "montage_service__port").write_text("eighty\n")
    return {"MONTAGE_SECRETS_DIR": str(tmp_path / "secrets")}


def _bad_dotenv_line(tmp_path: Path) -> dict[str, str]:
    (tmp_path / ".env").write_text("MONTAGE_MEDIA__CRF=30\nMONTAGE_MEDIA__THREADS 4\n")
    return {}


def _bad_dotenv_value(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "site.env").write_text("\n\nMONTAGE_MEDIA__CRF=thirty\n")
    return {"MONTAGE_ENV_FILE": str(tmp_path / "site.env")}


def _dotenv_selector(tmp_path: Path) -> dict[str, str]:
    (tmp_path / ".env").write_text("USE_SETTINGS_V2=false\n")  # chooses the loader: environment only
    return {}


# (what is wrong, how to make it, what the one-paragraph error must name)
BAD_CONFIG = [
    ("db-url-port", lambda p: {"MONTAGE_DB__URL": "postgresql+asyncpg://u:pw@h:abc/db"},
     ["MONTAGE_DB__URL", "db.url", "port is not a number", "u:***@h:abc/db"]),
    ("replica-url-port", lambda p: {"MONTAGE_REPLICA__URL": "postgresql+asyncpg://h:5x/db"},
     ["MONTAGE_REPLICA__URL", "replica.url", "port is not a number"]),
    ("db-url-garbage", lambda p: {"MONTAGE_DB__URL": "not a url"}, ["MONTAGE_DB__URL", "not a database URL"]),
    ("wrong-type", lambda p: {"MONTAGE_SERVICE__PORT": "seventy"}, ["MONTAGE_SERVICE__PORT", "'seventy'"]),
    ("out-of-range", lambda p: {"MONTAGE_MEDIA__CRF": "99"}, ["MONTAGE_MEDIA__CRF", "media.crf", "'99'"]),
    ("bad-bool", lambda p: {"MONTAGE_DB__ECHO": "perhaps"}, ["MONTAGE_DB__ECHO", "'perhaps'"]),
    ("unknown-field", lambda p: {"MONTAGE_SERVICE__PROT": "1"}, ["MONTAGE_SERVICE__PROT", "MONTAGE_SERVICE__PORT"]),
    ("section-json", lambda p: {"MONTAGE_LLM": '{"timeout_s": '}, ["MONTAGE_LLM", "not valid JSON"]),
    ("secrets-json", _bad_secrets_json, ["montage_llm", "not valid JSON", "line 1 column"]),
    ("secret-value", _bad_secret_value, ["montage_service__port", "service.port", "'eighty'"]),
    ("dotenv-line", _bad_dotenv_line, [".env:2", "MONTAGE_MEDIA__THREADS 4"]),
    ("dotenv-value", _bad_dotenv_value, ["MONTAGE_MEDIA__CRF", "site.env:3", "'thirty'"]),
    ("dotenv-selector", _dotenv_selector, [".env:1", "USE_SETTINGS_V2", "environment only"]),
    ("secrets-dir", lambda p: {"MONTAGE_SECRETS_DIR": str(p / "nowhere")}, ["MONTAGE_SECRETS_DIR", "nowhere"]),
    ("legacy-port", lambda p: {"USE_SETTINGS_V2": "false", "MONTAGE_PORT": "x"}, ["MONTAGE_PORT", "'x'"]),
]  # fmt: skip


@pytest.mark.parametrize(("make", "names"), [c[1:] for c in BAD_CONFIG], ids=[c[0] for c in BAD_CONFIG])
def test_bad_configuration_exits_2_naming_it(tmp_path: Path, make: object, names: list[str]) -> None:
    env = make(tmp_path)  # type: ignore[operator]
    done = config_show(tmp_path, **env)
    assert done.returncode == 2, (done.returncode, done.stderr)
    err = done.stderr.strip()
    assert err.startswith("montage: error: "), err
    assert len(err.splitlines()) == 1, err  # one paragraph
    assert "internal error" not in err and "Traceback" not in err
    for name in names:
        assert name in err, (name, err)
    assert done.stdout == ""
    assert "pw@" not in err  # a database password never reaches the terminal


def test_serve_smoke_with_bad_db_url_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "montage", "serve", "--smoke", "--workers", "0", "--port", "0", "--no-migrate"],
        env=child_env(MONTAGE_DB__URL="postgresql+asyncpg://u:pw@h:abc/db"),
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "MONTAGE_DB__URL" in done.stderr and "port is not a number" in done.stderr
    assert "internal error" not in done.stderr and "pw@" not in done.stderr


def test_db_command_with_bad_url_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "montage", "db", "--url", "postgresql+asyncpg://u:pw@h:abc/db", "upgrade"],
        env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--url" in done.stderr and "port is not a number" in done.stderr
    assert "internal error" not in done.stderr and "pw@" not in done.stderr


@pytest.mark.parametrize(
    "url",
    ["sqlite+aiosqlite:///var/montage.db", "sqlite+aiosqlite:///:memory:", "postgresql+asyncpg://u:p@h:5432/db",
     "postgresql+asyncpg://u:p@h:abc/db", "postgresql+asyncpg://h:/db", "postgresql+asyncpg://[::1]:5x/db",
     "postgresql+asyncpg://u@[::1]:5432/db?ssl=require", "not a url", "://h/db", "postgresql+asyncpg://h: 1/db",
     "postgresql+asyncpg://h:١٢/db", "postgresql+asyncpg://u:p@w@h:12/db"],
)  # fmt: skip
def test_db_url_check_agrees_with_sqlalchemy(url: str) -> None:
    """settings parses URLs without importing SQLAlchemy; it must accept exactly what SQLAlchemy accepts."""
    from sqlalchemy.engine import make_url

    from montage.settings import check_database_url

    try:
        make_url(url)
        sqlalchemy_ok = True
    except Exception:
        sqlalchemy_ok = False
    try:
        check_database_url(url, "--url")
        ours_ok = True
    except ConfigError:
        ours_ok = False
    assert ours_ok == sqlalchemy_ok


def test_loading_settings_stays_light(tmp_path: Path) -> None:
    """`montage config show`, `run` and `probe` load settings; that must not pull in SQLAlchemy."""
    code = (
        "import sys; from montage.settings import load_settings; "
        "load_settings(environ={'MONTAGE_DB__URL': 'postgresql+asyncpg://u@h:5432/db'}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'sqlalchemy', 'fastapi', 'av'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=child_env(), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"


ASSET = Path(__file__).resolve().parent / "assets" / "minimal.mp4"


@pytest.mark.parametrize(
    "argv",
    [["config", "show", "--json"], ["probe", str(ASSET)], ["run", str(ASSET), "-o", "plan.json", "--plan-only"]],
    ids=["config-show", "probe", "run-plan-only"],
)
def test_a_command_loads_settings_once(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One process, one load, handed down: a .env edited mid-run cannot give one command two configurations."""
    import montage.settings
    from montage.cli import main

    real = montage.settings.load_settings
    calls: list[object] = []

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setenv("MONTAGE_MEDIA__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(montage.settings, "load_settings", counting)
    assert main(argv) == 0, capsys.readouterr().err
    assert len(calls) == 1
