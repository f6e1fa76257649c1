"""``montage flags set`` (the phase rollbacks' set_flag) writes the same store the service reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from montage.cli import main
from montage.db import flagstore
from montage.db.database import Database, make_engine


@pytest.mark.usefixtures("clean_env")
@pytest.mark.filterwarnings("ignore:USE_SETTINGS_V2=false:DeprecationWarning")
def test_flags_set_writes_file_and_database(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MONTAGE_DB__URL", sqlite_url)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)  # USE_SETTINGS_V2=false switches to the legacy names
    monkeypatch.setenv("MONTAGE_OPS__FLAGS_FILE", str(tmp_path / "flags.json"))
    assert main(["flags", "set", "USE_SETTINGS_V2", "false"]) == 0
    assert "database flags table updated" in capsys.readouterr().out

    async def read() -> dict[str, object]:
        db = Database(make_engine(sqlite_url))
        try:
            async with db.session() as session:
                return await flagstore.get_flags(session)
        finally:
            await db.dispose()

    assert asyncio.run(read()) == {"USE_SETTINGS_V2": False}


@pytest.mark.usefixtures("clean_env")
def test_flags_set_without_database_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flags", "set", "SUBMISSIONS_PAUSED", "1"]) == 0
    out = capsys.readouterr().out
    assert "no database at" in out and (tmp_path / "var" / "flags.json").is_file()
    assert not (tmp_path / "var" / "montage.db").exists()
