"""Phase 3: whatever starts the service logs `Config source=settings_v2` (or `legacy`) as its first line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conftest import service_env


@pytest.mark.slow
@pytest.mark.parametrize(("use_v2", "expected"), [("true", "settings_v2"), ("false", "legacy")])
def test_serve_log_first_line_names_the_config_source(
    tmp_path: Path, sqlite_db_url: str, use_v2: str, expected: str
) -> None:
    env = service_env(tmp_path, sqlite_db_url)
    env["USE_SETTINGS_V2"] = use_v2
    env["DATABASE_URL"] = sqlite_db_url  # the legacy loader's name for db.url
    log = tmp_path / "serve.log"
    done = subprocess.run(
        [sys.executable, "-m", "montage", "serve", "--smoke", "--workers", "0", "--port", "0", "--log-file", str(log)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = log.read_text().splitlines()
    assert lines[0] == f"Config source={expected}"
    assert sum(line.startswith("Config source=") for line in lines) == 1
    assert any("smoke: GET /v1/public/ready -> 200" in line for line in lines)


def test_smoke_fails_when_the_database_is_unreachable(tmp_path: Path) -> None:
    env = service_env(tmp_path, "postgresql+asyncpg://montage@127.0.0.1:9/montage")
    done = subprocess.run(
        [sys.executable, "-m", "montage", "serve", "--smoke", "--workers", "0", "--port", "0"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "not reachable" in done.stderr and "Traceback" not in done.stderr


def test_admin_config_names_the_true_origin_of_each_source(tmp_path: Path, sqlite_db_url: str) -> None:
    """A real `montage serve`: one value from each of the five sources, read back over HTTP."""
    import signal

    import httpx

    from montage.db.pgtemp import free_port
    from tests.service.conftest import create_key_sync, wait_for

    _, key = create_key_sync(sqlite_db_url)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "montage_llm").write_text('{"timeout_s": 7}')
    (tmp_path / ".env").write_text("MONTAGE_MEDIA__CRF=30\n")
    env = service_env(tmp_path, sqlite_db_url)
    del env["MONTAGE_ENV_FILE"]  # read ./.env of the working directory
    env["MONTAGE_SECRETS_DIR"] = str(secrets)
    port = free_port()
    argv = [sys.executable, "-m", "montage", "serve", "--workers", "0", "--port", str(port), "--no-migrate"]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            def ready() -> bool:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    return client.get("/v1/public/ready").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, 90, "montage serve to be ready")
            resp = client.get("/v1/admin/config", headers={"X-API-Key": key})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert resp.status_code == 200, resp.text
    shown = resp.json()["settings"]
    cwd = tmp_path.resolve()
    assert shown["service.port"] == {"value": str(port), "origin": "command line"}
    assert shown["db.url"] == {"value": "**********", "origin": "environment MONTAGE_DB__URL"}
    assert shown["media.crf"] == {"value": "30", "origin": f"env file {cwd / '.env'}:1 MONTAGE_MEDIA__CRF"}
    assert shown["llm.timeout_s"] == {"value": "7.0", "origin": f"secrets file {secrets / 'montage_llm'}"}
    assert shown["media.preset"] == {"value": "veryfast", "origin": "default"}
