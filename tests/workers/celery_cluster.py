"""Real parts for the celery engine's tests: redis-server on a loopback port, Celery worker processes
(each with its own scratch directory, standing in for a machine), and the API in-process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from montage.core import loopback, proc
from montage.db import jobs
from montage.db.database import Database, make_engine
from montage.db.models import JobEvent
from montage.settings import LoadedSettings, load_settings
from tests.service.conftest import ServerThread, create_key_sync, service_env, wait_for

REDIS_SERVER = "/usr/bin/redis-server"
PASSWORD = "s3cret-broker-pw"


class RedisServer:
    """redis-server on 127.0.0.1, its files in ``directory``, no persistence (a restart loses the queue)."""

    def __init__(self, directory: Path, port: int | None = None, password: str = PASSWORD) -> None:
        self.directory = directory
        self.port = port or loopback.free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "no", "--requirepass", self.password]  # fmt: skip
        with (self.directory / "redis.log").open("ab") as log:
            self.proc = proc.spawn(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(self._pong, 20, f"redis-server on port {self.port}")
        except BaseException:
            self.stop()  # never leave a redis-server behind a failed start
            raise
        return self

    def _pong(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            proc.stop(self.proc, grace_s=5)
            self.proc = None


@dataclass
class Cluster:
    tmp_path: Path
    db_url: str
    redis: RedisServer
    clip: Path
    env: dict[str, str]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_worker(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        scratch = self.tmp_path / "machines" / name
        scratch.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "montage", "worker", "--engine", "celery", "--id", name,
                "--scratch", str(scratch), "--log-file", str(scratch / "worker.log"), *extra]  # fmt: skip
        with (scratch / "stdout.log").open("ab") as out:
            self.workers[name] = proc.spawn(argv, env=self.env, cwd=scratch, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: self._registered(name) or self._dead(name), 60, f"celery worker {name} to register")
        assert not self._dead(name), self.log(name)
        return self.workers[name]

    def _dead(self, name: str) -> bool:
        return self.workers[name].poll() is not None

    def _registered(self, name: str) -> bool:
        from montage.workers.celery_engine import is_registered

        return is_registered(self.redis.url, name)

    def log(self, name: str) -> str:
        scratch = self.tmp_path / "machines" / name
        return "".join(p.read_text(errors="replace") for p in sorted(scratch.glob("*.log")))

    def kill(self, name: str) -> None:
        """SIGKILL the worker machine: its main process, pool children and renderers."""
        child = self.workers[name]
        for pid in _descendants(child.pid) + [child.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        child.wait()

    def stop_all(self) -> None:
        for child in self.workers.values():
            proc.stop(child, grace_s=10)

    def settings(self, **celery: Any) -> LoadedSettings:
        overrides: dict[str, Any] = {
            "data_dir": str(self.tmp_path / "data"),
            "db": {"url": self.db_url},
            "service": {"media_root": str(self.tmp_path / "media"), "engine": "celery", "executor": "ffmpeg-trim",
                        "lease_s": 3, "heartbeat_s": 0.5, "max_attempts": 3},
            "celery": {"broker_url": self.redis.url, "relay_after_s": 2, "relay_interval_s": 0.5,
                       "publish_timeout_s": 1, **celery},
            "ops": {"flags_file": str(self.tmp_path / "flags.json")},
        }  # fmt: skip
        return load_settings(overrides=overrides, environ={"USE_SETTINGS_V2": "true", "MONTAGE_ENV_FILE": "/none"})

    @property
    def db(self) -> Database:
        return Database(make_engine(self.db_url))

    def job(self, job_id: str) -> Any:
        async def go() -> Any:
            db = self.db
            try:
                async with db.session() as session:
                    return await jobs.get_job(session, job_id)
            finally:
                await db.dispose()

        return asyncio.run(go())

    def events(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        from sqlalchemy import select

        async def go() -> list[tuple[str, dict[str, Any]]]:
            db = self.db
            try:
                async with db.session() as session:
                    rows = await session.execute(
                        select(JobEvent.kind, JobEvent.detail).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
                    )
                    return [(kind, dict(detail or {})) for kind, detail in rows]
            finally:
                await db.dispose()

        return asyncio.run(go())


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, timeout=10).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = (int(x) for x in line.split())
        children.setdefault(pp, []).append(p)
    found, todo = [], [pid]
    while todo:
        for kid in children.get(todo.pop(), []):
            found.append(kid)
            todo.append(kid)
    return found


def celery_env(tmp_path: Path, db_url: str, broker_url: str, **celery: str) -> dict[str, str]:
    env = service_env(tmp_path, db_url, ENGINE="celery", MAX_ATTEMPTS="3")
    env.update({"MONTAGE_CELERY__BROKER_URL": broker_url, "MONTAGE_CELERY__RELAY_AFTER_S": "2",
                "MONTAGE_CELERY__RELAY_INTERVAL_S": "0.5", "MONTAGE_CELERY__PUBLISH_TIMEOUT_S": "1"})  # fmt: skip
    env.update({f"MONTAGE_CELERY__{k.upper()}": v for k, v in celery.items()})
    return env


@dataclass
class Api:
    base: str
    client: httpx.Client
    key: str

    def submit(self, clip_name: str, duration: float) -> str:
        resp = self.client.post("/v1/public/jobs", json={"path": clip_name, "duration": duration})
        assert resp.status_code == 202, resp.text
        return str(resp.json()["id"])

    def admin(self, method: str, path: str) -> Any:
        resp = self.client.request(method, path, headers={"X-API-Key": self.key})
        assert resp.status_code == 200, resp.text
        return resp.json()


def serve_api(cluster: Cluster, **celery: Any) -> Iterator[Api]:
    from montage.service.app import create_app

    _, key = create_key_sync(cluster.db_url)
    with ServerThread(create_app(cluster.settings(**celery))) as base, httpx.Client(base_url=base, timeout=30) as c:
        yield Api(base, c, key)


def serve_cli(cluster: Cluster) -> Iterator[Api]:
    """``montage serve --engine celery`` as a user runs it (the relay runs inside it)."""
    _, key = create_key_sync(cluster.db_url)
    port = loopback.free_port()
    argv = [sys.executable, "-m", "montage", "serve", "--engine", "celery", "--port", str(port)]
    log = cluster.tmp_path / "serve.log"
    with loopback.start(argv, port=port, ready_path="/v1/public/ready", log=log, env=cluster.env, grace_s=20) as srv:
        with httpx.Client(base_url=srv.base, timeout=30) as client:
            yield Api(srv.base, client, key)


def wait_state(cluster: Cluster, job_id: str, states: set[str], timeout: float) -> Any:
    return wait_for(lambda: (j := cluster.job(job_id)) is not None and j.state in states and j, timeout,
                    f"job {job_id} to reach {sorted(states)}", interval=0.2)  # fmt: skip


def settle(seconds: float) -> None:
    time.sleep(seconds)
