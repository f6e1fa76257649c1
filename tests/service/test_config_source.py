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
