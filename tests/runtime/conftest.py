"""Fake /proc and /sys/fs/cgroup trees for the memory manager tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from montage.db import migrate
from montage.db.database import Database, make_engine

MIB = 1024 * 1024

V2_MOUNTINFO = "41 31 0:38 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
)
HYBRID_MOUNTINFO = V1_MOUNTINFO + "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"


class FakeRoot:
    """A root directory holding proc/self/{cgroup,mountinfo} and cgroup files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def proc(self, cgroup: str, mountinfo: str) -> None:
        proc = self.root / "proc/self"
        proc.mkdir(parents=True, exist_ok=True)
        (proc / "cgroup").write_text(cgroup)
        (proc / "mountinfo").write_text(mountinfo)

    def write(self, relative: str, name: str, content: str) -> Path:
        directory = self.root / relative.lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        path.write_text(content)
        return path

    def v2(self, directory: str, *, limit: str, usage_mb: float, inactive_mb: float = 0) -> None:
        self.write(directory, "memory.max", limit + "\n")
        self.write(directory, "memory.current", f"{int(usage_mb * MIB)}\n")
        self.write(directory, "memory.stat", f"anon 1\nfile 2\ninactive_file {int(inactive_mb * MIB)}\nactive_file 3\n")

    def v1(self, directory: str, *, limit: str, usage_mb: float, inactive_mb: float = 0) -> None:
        self.write(directory, "memory.limit_in_bytes", limit + "\n")
        self.write(directory, "memory.usage_in_bytes", f"{int(usage_mb * MIB)}\n")
        stat = f"cache 5\ninactive_file 1\ntotal_cache 5\ntotal_inactive_file {int(inactive_mb * MIB)}\n"
        self.write(directory, "memory.stat", stat)


@pytest.fixture
def fake_root(tmp_path: Path) -> FakeRoot:
    return FakeRoot(tmp_path)


def mb(value: float) -> str:
    return str(int(value * MIB))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A migrated SQLite database file in tmp_path."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'montage.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(make_engine(db_url))
    yield database
    await database.dispose()
