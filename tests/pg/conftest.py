"""A real PostgreSQL primary and a streaming hot standby on loopback, for the whole test session.

initdb refuses to run as root, so as root every server command runs as the ``postgres`` user
(``runuser -u postgres --``) in a directory it owns.  The standby is made by
``pg_basebackup -R`` and is read-only: a write routed to it fails.
Binaries: ``MONTAGE_TEST_PG_BIN`` (set by scripts/run_tests.py), default /usr/lib/postgresql/15/bin.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import missing_tool

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
USER = "montage"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    bindir: Path
    base: Path
    primary_port: int
    standby_port: int
    as_postgres: list[str]

    def run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [*self.as_postgres, str(self.bindir / tool), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.base)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
        return done

    def psql(self, port: int, sql: str, db: str = "postgres") -> str:
        args = ["-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", db, "-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql]
        return self.run("psql", *args).stdout.strip()

    def url(self, db: str, *, standby: bool = False) -> str:
        port = self.standby_port if standby else self.primary_port
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{port}/{db}"

    def new_database(self) -> str:
        """A fresh empty database on the primary, replicated to the standby (waits until it is there)."""
        name = f"t_{secrets.token_hex(5)}"
        self.psql(self.primary_port, f"CREATE DATABASE {name}")
        deadline = time.monotonic() + 30
        while self.psql(self.standby_port, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") != "1":
            if time.monotonic() > deadline:
                raise RuntimeError(f"database {name} did not reach the standby in 30 s")
            time.sleep(0.1)
        return name

    def wait_replayed(self, timeout: float = 30) -> None:
        """Wait until the standby has replayed everything the primary has written so far."""
        lsn = self.psql(self.primary_port, "SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        sql = f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"
        while self.psql(self.standby_port, sql) != "t":
            if time.monotonic() > deadline:
                raise RuntimeError("the standby did not catch up")
            time.sleep(0.05)


def _start(cluster: PgCluster, datadir: Path, port: int) -> None:
    conf = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{cluster.base}'",
        "wal_level": "replica",
        "max_wal_senders": "4",
        "hot_standby": "on",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "60",
        "shared_buffers": "32MB",
    }
    with (datadir / "postgresql.conf").open("a") as fh:
        fh.write("".join(f"{k} = {v}\n" for k, v in conf.items()))
    cluster.run(
        "pg_ctl", "-D", str(datadir), "-l", str(cluster.base / f"{datadir.name}.log"), "-w", "-t", "60", "start"
    )


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    bindir = Path(os.environ.get("MONTAGE_TEST_PG_BIN", DEFAULT_BIN))
    if not (bindir / "initdb").is_file():
        missing_tool(f"PostgreSQL server binaries not found in {bindir}; install them with: apt-get install postgresql")
    as_postgres: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="montage-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            missing_tool("runuser is needed to run initdb as the postgres user; install util-linux")
        as_postgres = [str(runuser), "-u", "postgres", "--"]
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    cluster = PgCluster(bindir, base, _free_port(), _free_port(), as_postgres)
    started: list[Path] = []
    try:
        primary = base / "primary"
        cluster.run("initdb", "-D", str(primary), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync", "-N")
        _start(cluster, primary, cluster.primary_port)
        started.append(primary)
        standby = base / "standby"
        cluster.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(cluster.primary_port), "-U", USER,
                    "-D", str(standby), "-R", "-X", "stream", "--checkpoint=fast")  # fmt: skip
        _start(cluster, standby, cluster.standby_port)
        started.append(standby)
        assert cluster.psql(cluster.standby_port, "SELECT pg_is_in_recovery()") == "t"
        yield cluster
    finally:
        for datadir in reversed(started):
            subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60, check=False)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_db(pg_cluster: PgCluster) -> str:
    """The name of a fresh database (present on primary and standby)."""
    return pg_cluster.new_database()
