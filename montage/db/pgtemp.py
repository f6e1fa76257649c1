"""A throwaway PostgreSQL cluster on loopback: a primary and, optionally, a streaming hot standby.

Used by the tests (tests/pg), the load test (scripts/load_test.py) and the ``migrations`` check.
initdb refuses to run as root, so as root every server command runs as the ``postgres`` user
(``runuser -u postgres --``) in a directory that user owns.  The standby is made with
``pg_basebackup -R`` and is read-only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from montage.core import proc as core_proc
from montage.core.loopback import free_port
from montage.errors import MontageError, ToolMissing

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
USER = "montage"
BIN_ENV = "MONTAGE_TEST_PG_BIN"


class PgError(MontageError):
    """A PostgreSQL server command failed."""


def find_bindir(explicit: str | None = None) -> Path:
    """PostgreSQL's server binaries: ``explicit``, else ``$MONTAGE_TEST_PG_BIN``, else the Debian path."""
    bindir = Path(explicit or os.environ.get(BIN_ENV, DEFAULT_BIN))
    if not (bindir / "initdb").is_file():
        raise ToolMissing(
            f"PostgreSQL server binaries not found in {bindir} (initdb missing); "
            f"install them with: apt-get install postgresql, or set {BIN_ENV}."
        )
    return bindir


@dataclass
class PgCluster:
    bindir: Path
    standby: bool = True
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="montage-pg-")))
    primary_port: int = field(default_factory=free_port)
    standby_port: int = field(default_factory=free_port)
    as_postgres: list[str] = field(default_factory=list)
    _started: list[Path] = field(default_factory=list)

    def run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [*self.as_postgres, str(self.bindir / tool), *args]
        done = core_proc.run(argv, timeout_s=timeout, cwd=self.base)
        if done.returncode != 0:
            raise PgError(f"{' '.join(argv)} exited {done.returncode}: {done.tail(40)[-2000:]}")
        return subprocess.CompletedProcess(done.argv, done.returncode, done.stdout, done.stderr)

    def psql(self, port: int, sql: str, db: str = "postgres") -> str:
        args = ["-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", db, "-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql]
        return self.run("psql", *args).stdout.strip()

    def url(self, db: str, *, standby: bool = False) -> str:
        port = self.standby_port if standby else self.primary_port
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{port}/{db}"

    def new_database(self) -> str:
        """A fresh empty database on the primary (and, with a standby, present there too)."""
        name = f"t_{secrets.token_hex(5)}"
        self.psql(self.primary_port, f"CREATE DATABASE {name}")
        if self.standby:
            self._wait(self.standby_port, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'", "1")
        return name

    def wait_replayed(self, timeout: float = 30) -> None:
        """Wait until the standby has replayed everything the primary has written so far."""
        lsn = self.psql(self.primary_port, "SELECT pg_current_wal_lsn()")
        self._wait(self.standby_port, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn", "t", timeout)

    def _wait(self, port: int, sql: str, expected: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.psql(port, sql) != expected:
            if time.monotonic() > deadline:
                raise PgError(f"timed out after {timeout} s waiting for {sql!r} to return {expected!r}")
            time.sleep(0.05)

    def _start(self, datadir: Path, port: int) -> None:
        conf = {
            "listen_addresses": "'127.0.0.1'", "port": str(port), "unix_socket_directories": f"'{self.base}'",
            "wal_level": "replica", "max_wal_senders": "4", "hot_standby": "on", "fsync": "off",
            "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "80",
            "shared_buffers": "32MB",
        }  # fmt: skip
        with (datadir / "postgresql.conf").open("a") as fh:
            fh.write("".join(f"{k} = {v}\n" for k, v in conf.items()))
        log = str(self.base / f"{datadir.name}.log")
        self.run("pg_ctl", "-D", str(datadir), "-l", log, "-w", "-t", "60", "start")
        self._started.append(datadir)

    def start(self) -> PgCluster:
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise ToolMissing("runuser is needed to run initdb as the postgres user; install util-linux.")
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise ToolMissing("there is no 'postgres' user to run initdb as; install postgresql.") from None
            self.as_postgres = [runuser, "-u", "postgres", "--"]
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        primary = self.base / "primary"
        self.run("initdb", "-D", str(primary), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync", "-N")
        self._start(primary, self.primary_port)
        if self.standby:
            standby = self.base / "standby"
            self.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", USER,
                     "-D", str(standby), "-R", "-X", "stream", "--checkpoint=fast")  # fmt: skip
            self._start(standby, self.standby_port)
            if self.psql(self.standby_port, "SELECT pg_is_in_recovery()") != "t":
                raise PgError("the standby is not in recovery mode")
        return self

    def stop(self) -> None:
        for datadir in reversed(self._started):
            subprocess.run([*self.as_postgres, str(self.bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60, check=False)  # fmt: skip
        self._started.clear()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
