"""pytest-alembic's checks on SQLite; tests/pg runs the same checks on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

# Experimental in pytest-alembic: enabled explicitly, by importing it here.
from pytest_alembic.tests.experimental import test_downgrade_leaves_no_trace

__all__ = [
    "test_downgrade_leaves_no_trace",
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_montage_db_cli_round_trip(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"

    def montage_db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "montage", "db", "--url", url, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    before = montage_db("current")
    assert before.returncode == 1 and "base (not migrated)" in before.stdout
    assert montage_db("upgrade").returncode == 0
    at_head = montage_db("current")
    assert at_head.returncode == 0, at_head.stderr
    down = montage_db("downgrade")
    assert down.returncode == 0 and "database at 0002" in down.stdout
    assert montage_db("downgrade", "base").returncode == 0
    assert "base (not migrated)" in montage_db("current").stdout


def test_plain_alembic_downgrade_minus_one(tmp_path: Path) -> None:
    """Phase 5's rollback is the plain ``alembic downgrade -1``: alembic.ini must drive the same scripts."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"
    alembic = Path(sys.executable).with_name("alembic")
    for step in (["upgrade", "head"], ["downgrade", "-1"]):
        done = subprocess.run(
            [str(alembic), "-c", str(ROOT / "alembic.ini"), "-x", f"url={url}", *step],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert "Running downgrade 0003 -> 0002" in done.stderr


def test_db_cli_unreachable_database_is_one_paragraph() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "montage", "db", "--url", "postgresql+asyncpg://u@127.0.0.1:9/x", "current"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "not reachable" in done.stderr and "Traceback" not in done.stderr
