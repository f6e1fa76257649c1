"""A real PostgreSQL primary and a streaming hot standby on loopback for the whole test session.

See montage/db/pgtemp.py: initdb runs as the ``postgres`` user when the tests run as root; the
standby comes from ``pg_basebackup -R`` and is read-only, so a write routed to it fails.
Binaries: ``MONTAGE_TEST_PG_BIN`` (set by scripts/run_tests.py), default /usr/lib/postgresql/15/bin.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from montage.db.pgtemp import PgCluster, find_bindir
from montage.errors import ToolMissing
from tests.conftest import missing_tool

__all__ = ["PgCluster"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    try:
        bindir = find_bindir()
    except ToolMissing as exc:
        missing_tool(str(exc))
        raise
    with PgCluster(bindir) as cluster:
        yield cluster


@pytest.fixture
def pg_db(pg_cluster: PgCluster) -> str:
    """The name of a fresh database (present on primary and standby)."""
    return pg_cluster.new_database()
