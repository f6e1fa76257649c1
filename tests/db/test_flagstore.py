"""One function writes both flag stores; after any failure they still agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage.cli import main
from montage.core.flags import FlagError
from montage.db import flagstore
from montage.db.database import Database, make_engine

pytestmark = pytest.mark.anyio


async def _table(db: Database) -> dict[str, object]:
    async with db.session() as session:
        return await flagstore.get_flags(session)


async def test_set_flag_validates_before_writing_anything(database: Database, tmp_path: Path) -> None:
    flags_file = tmp_path / "flags.json"
    for name, value in [("NOPE", True), ("_", True), ("WORKERS_PAUSED", "maybe"), ("WORKERS_PAUSED", 2)]:
        with pytest.raises(FlagError, match=name if name != "_" else "unknown flag"):
            await flagstore.set_flag(database, flags_file, name, value)
    assert not flags_file.exists() and await _table(database) == {}


async def test_a_database_failure_restores_the_file(tmp_path: Path) -> None:
    """The table is missing (database not migrated): the write fails and the file is as it was."""
    from sqlalchemy.exc import OperationalError

    flags_file = tmp_path / "flags.json"
    flags_file.write_text('{"WORKERS_PAUSED": false}\n')
    broken = Database(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"))
    try:
        with pytest.raises(OperationalError):
            await flagstore.set_flag(broken, flags_file, "WORKERS_PAUSED", True)
        assert flags_file.read_text() == '{"WORKERS_PAUSED": false}\n'  # byte for byte
        with pytest.raises(OperationalError):  # a flag the file did not have is removed again
            await flagstore.set_flag(broken, flags_file, "SUBMISSIONS_PAUSED", True)
        assert json.loads(flags_file.read_text()) == {"WORKERS_PAUSED": False}
    finally:
        await broken.dispose()


async def test_import_refuses_a_bad_file_before_writing(database: Database, tmp_path: Path) -> None:
    flags_file = tmp_path / "flags.json"
    flags_file.write_text('{"WORKERS_PAUSED": true, "TYPO_PAUSED": true}\n')
    with pytest.raises(FlagError, match=f"flags file {flags_file}: unknown flag 'TYPO_PAUSED'"):
        await flagstore.import_flags_file(database, flags_file)
    flags_file.write_text('{"WORKERS_PAUSED": "sometimes"}\n')
    with pytest.raises(FlagError, match='WORKERS_PAUSED="sometimes"'):
        await flagstore.import_flags_file(database, flags_file)
    assert await _table(database) == {}


@pytest.mark.usefixtures("clean_env")
def test_cli_refuses_unknown_names_and_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flags", "set", "PERF_GUARD_ENABLD", "false"]) == 2
    assert "unknown flag 'PERF_GUARD_ENABLD'" in capsys.readouterr().err
    assert main(["flags", "set", "PERF_GUARD_ENABLED", "nope"]) == 2
    assert "PERF_GUARD_ENABLED" in capsys.readouterr().err
    assert not (tmp_path / "var" / "flags.json").exists()


@pytest.mark.usefixtures("clean_env")
def test_cli_with_an_unmigrated_database_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    monkeypatch.setenv("MONTAGE_DB__URL", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    flags_file = tmp_path / "flags.json"
    monkeypatch.setenv("MONTAGE_OPS__FLAGS_FILE", str(flags_file))
    assert main(["flags", "set", "WORKERS_PAUSED", "yes"]) == 1
    assert "left as it was" in capsys.readouterr().err
    assert not flags_file.exists()
