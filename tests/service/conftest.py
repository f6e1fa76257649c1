"""A real app served by uvicorn on loopback (in a thread), backed by a migrated SQLite file."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from montage.db import keys, migrate
from montage.db.database import Database, make_engine
from montage.settings import LoadedSettings, load_settings


def make_loaded(tmp_path: Path, db_url: str, **service: Any) -> LoadedSettings:
    """settings_v2 with everything under ``tmp_path``; no environment or .env leaks in."""
    overrides: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "db": {"url": db_url},
        "service": {"media_root": str(tmp_path / "media"), "upload_max_mb": 1, **service},
        "ops": {"flags_file": str(tmp_path / "flags.json")},
    }
    (tmp_path / "media").mkdir(exist_ok=True)
    return load_settings(overrides=overrides, environ={"USE_SETTINGS_V2": "true", "MONTAGE_ENV_FILE": "/nonexistent"})


def create_key_sync(db_url: str, name: str = "test") -> tuple[str, str]:
    async def go() -> tuple[str, str]:
        db = Database(make_engine(db_url))
        try:
            async with db.begin() as session:
                row, plain = await keys.create_key(session, name)
                return row.id, plain
        finally:
            await db.dispose()

    return asyncio.run(go())


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 and an ephemeral port, stopped on exit."""

    def __init__(self, app: Any) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Live:
    base_url: str
    client: httpx.Client
    admin_key: str
    admin_key_id: str
    loaded: LoadedSettings
    db_url: str
    tmp_path: Path

    @property
    def admin(self) -> dict[str, str]:
        return {"X-API-Key": self.admin_key}


@pytest.fixture
def sqlite_db_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'montage.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
def live(tmp_path: Path, sqlite_db_url: str) -> Iterator[Live]:
    from montage.service.app import create_app

    loaded = make_loaded(tmp_path, sqlite_db_url)
    key_id, key = create_key_sync(sqlite_db_url)
    with ServerThread(create_app(loaded)) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield Live(base, client, key, key_id, loaded, sqlite_db_url, tmp_path)


@pytest.fixture(scope="session")
def make_clip(tmp_path_factory: pytest.TempPathFactory, require_tool: Any) -> Callable[[int], Path]:
    """``make_clip(seconds)``: a real 640x360 H.264/AAC clip of that length (testsrc and a tone), made by
    ffmpeg once per length and session."""
    import subprocess

    ffmpeg = require_tool("ffmpeg", "ffmpeg")
    made: dict[int, Path] = {}

    def make(seconds: int) -> Path:
        if seconds not in made:
            out = tmp_path_factory.mktemp("media") / f"clip-{seconds}s.mp4"
            subprocess.run(
                [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=640x360:rate=25:duration={seconds}",
                 "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:v", "libx264",
                 "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(out)],
                check=True, timeout=120, capture_output=True,
            )  # fmt: skip
            made[seconds] = out
        return made[seconds]

    return make


@pytest.fixture(scope="session")
def clip(make_clip: Callable[[int], Path]) -> Path:
    """A real 8 s 640x360 H.264/AAC clip made by ffmpeg."""
    return make_clip(8)


def service_env(tmp_path: Path, db_url: str, **settings: str) -> dict[str, str]:
    """Environment for `montage serve` / `montage worker` child processes: everything under tmp_path."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MONTAGE_") and k != "USE_SETTINGS_V2"}
    env.update(
        {
            "MONTAGE_DB__URL": db_url,
            "MONTAGE_DATA_DIR": str(tmp_path / "data"),
            "MONTAGE_SERVICE__MEDIA_ROOT": str(tmp_path / "media"),
            "MONTAGE_OPS__FLAGS_FILE": str(tmp_path / "flags.json"),
            "MONTAGE_ENV_FILE": str(tmp_path / "none.env"),
            "MONTAGE_SERVICE__EXECUTOR": "ffmpeg-trim",
            "MONTAGE_SERVICE__POLL_S": "0.2",
            "MONTAGE_SERVICE__HEARTBEAT_S": "0.5",
            "MONTAGE_SERVICE__LEASE_S": "3",
            "MONTAGE_MEDIA__THREADS": "1",
        }
    )
    env.update({f"MONTAGE_SERVICE__{k.upper()}": v for k, v in settings.items()})
    return env


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
