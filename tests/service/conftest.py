"""A real app served by uvicorn on loopback (in a thread), backed by a migrated SQLite file."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
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
