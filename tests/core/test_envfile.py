"""The flags file path honours the sources settings_v2 reads (environment, ``.env``, secrets), so a
``MONTAGE_OPS__FLAGS_FILE`` set in ``.env`` moves the file for every component alike (issue 8)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from montage.cli import main
from montage.core import envfile
from montage.core.flags import flags_path
from montage.settings import load_settings

VAR = "MONTAGE_OPS__FLAGS_FILE"
NO_SECRETS = {"MONTAGE_SECRETS_DIR": ""}

# How a path may be spelled in a .env file, and the path settings (python-dotenv) reads from it.
SPELLINGS = {
    "bare": (f"{VAR}=custom/flags.json\n", "custom/flags.json"),
    "double": (f'{VAR}="custom dir/flags.json"\n', "custom dir/flags.json"),
    "single": (f"{VAR}='custom/fl#ags.json'\n", "custom/fl#ags.json"),
    "export": (f"export {VAR}=custom/flags.json\n", "custom/flags.json"),
    "comment": (f"# {VAR}=commented/out.json\n{VAR}=custom/flags.json  # the flags\n", "custom/flags.json"),
    "spaces": (f"  {VAR} = custom/flags.json\n", "custom/flags.json"),
    "last-wins": (f"{VAR}=first.json\nMONTAGE_LOG_LEVEL=INFO\n{VAR}=custom/flags.json\n", "custom/flags.json"),
}


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_core_and_settings_read_the_same_path_from_dotenv(spelling: str, tmp_path: Path) -> None:
    text, expected = SPELLINGS[spelling]
    (tmp_path / ".env").write_text(text, encoding="utf-8")
    settings_path = load_settings(environ={"USE_SETTINGS_V2": "true", **NO_SECRETS}).settings.ops.flags_file
    assert flags_path(environ=NO_SECRETS) == Path(expected) == settings_path


@pytest.mark.usefixtures("clean_env")
def test_precedence_is_settings_order(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"{VAR}=from-dotenv.json\n", encoding="utf-8")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "montage_ops").write_text(json.dumps({"flags_file": "from-section.json"}), encoding="utf-8")
    env = {"MONTAGE_SECRETS_DIR": str(secrets)}
    assert flags_path(environ={**env, VAR: "from-env.json"}) == Path("from-env.json")
    assert flags_path(environ=env) == Path("from-dotenv.json")
    assert flags_path("explicit.json", environ=env) == Path("explicit.json")
    # MONTAGE_ENV_FILE elsewhere (or empty) means ./.env is not read; then the secrets directory counts
    other = tmp_path / "other.env"
    other.write_text(f"export {VAR}='from-other.json'\n", encoding="utf-8")
    assert flags_path(environ={**env, "MONTAGE_ENV_FILE": str(other)}) == Path("from-other.json")
    assert flags_path(environ={**env, "MONTAGE_ENV_FILE": ""}) == Path("from-section.json")
    (secrets / "montage_ops__flags_file").write_text("from-file.json\n", encoding="utf-8")
    assert flags_path(environ={**env, "MONTAGE_ENV_FILE": ""}) == Path("from-file.json")
    for environ in ({**env, "MONTAGE_ENV_FILE": ""}, {**env, "MONTAGE_ENV_FILE": "", VAR: "x.json"}):
        loaded = load_settings(environ={"USE_SETTINGS_V2": "true", **environ})
        assert loaded.settings.ops.flags_file == flags_path(environ=environ)
    # a relative path and the .env are taken from root when given (the repository a check runs in)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".env").write_text(f"{VAR}=var/repo-flags.json\n", encoding="utf-8")
    assert flags_path(environ=NO_SECRETS, root=repo) == repo / "var" / "repo-flags.json"
    assert flags_path(environ=NO_SECRETS, root=tmp_path / "empty") == tmp_path / "empty" / "var" / "flags.json"


@pytest.mark.usefixtures("clean_env")
def test_a_dotenv_that_is_a_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    with pytest.raises(envfile.ConfigError, match=r"\.env is not a regular file"):
        flags_path(environ=NO_SECRETS)


@pytest.mark.usefixtures("clean_env")
def test_dotenv_moves_the_flags_file_for_flags_set_the_api_the_worker_and_the_toolkit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's ./.env names the flags file: `montage flags set` writes there, and the service (which
    imports it at start-up), the worker, the reaper and the perf session switch read it there."""
    from montage.db import migrate
    from montage.ops import sessions
    from montage.runtime.reaper import reaper_enabled
    from montage.service.app import create_app
    from tests.service.conftest import ServerThread

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'montage.db'}"
    (tmp_path / "media").mkdir()
    (tmp_path / ".env").write_text(
        f"{VAR}=custom/flags.json\nMONTAGE_DB__URL={db_url}\nMONTAGE_DATA_DIR={tmp_path / 'data'}\n"
        f"MONTAGE_SERVICE__MEDIA_ROOT={tmp_path / 'media'}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("MONTAGE_SECRETS_DIR", "")
    monkeypatch.setenv("USE_SETTINGS_V2", "true")
    # no database yet: `flags set` writes only the file, so what the service reads can only come from it
    for name, value in [("SUBMISSIONS_PAUSED", "yes"), ("WORKERS_PAUSED", "1"), ("ZOMBIE_REAPER_ENABLED", "off"),
                        ("PERF_GUARD_ENABLED", "false")]:  # fmt: skip
        assert main(["flags", "set", name, value]) == 0
    custom = tmp_path / "custom" / "flags.json"
    assert json.loads(custom.read_text()) == {
        "PERF_GUARD_ENABLED": False, "SUBMISSIONS_PAUSED": True, "WORKERS_PAUSED": True,
        "ZOMBIE_REAPER_ENABLED": False,
    }  # fmt: skip
    assert not (tmp_path / "var").exists()

    loaded = load_settings()
    assert loaded.settings.ops.flags_file == Path("custom/flags.json")
    assert reaper_enabled(loaded.settings.ops.flags_file)[0] is False
    assert sessions.disabled_by_flag("perf", tmp_path) is not None

    migrate.upgrade(db_url)
    with ServerThread(create_app(loaded)) as base:
        resp = httpx.post(f"{base}/v1/public/jobs", json={"path": "missing.mp4", "duration": 5}, timeout=30)
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "submissions_paused", resp.text
    assert asyncio.run(_worker_claims(db_url, tmp_path)) is False


async def _worker_claims(db_url: str, tmp_path: Path) -> bool:
    from montage.db import jobs
    from montage.db.database import Database, make_engine
    from montage.workers.executor import FfmpegTrimExecutor
    from montage.workers.worker import Worker, WorkerConfig

    db = Database(make_engine(db_url))
    try:
        async with db.begin() as session:
            await jobs.create_job(session, input_path=str(tmp_path / "x.mp4"), uploaded=False, duration_s=1,
                                  aspect="16:9")  # fmt: skip
        config = WorkerConfig(worker_id="t", data_dir=tmp_path / "data", lease_s=5, heartbeat_s=0.3, poll_s=0.1,
                              job_timeout_s=60, drain_grace_s=5, max_attempts=1, retention_s=3600)  # fmt: skip
        return await Worker(db, FfmpegTrimExecutor(threads=1), config).run(once=True) == 1
    finally:
        await db.dispose()
