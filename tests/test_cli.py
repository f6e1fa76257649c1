from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from montage.cli import main

HEAVY = ["fastapi", "sqlalchemy", "jinja2", "rich", "pydantic", "av", "ffmpeg", "opentimelineio", "httpx", "yaml"]


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv=['montage','--help']\n"
        "try:\n runpy.run_module('montage', run_name='__main__')\n"
        "except SystemExit: pass\n"
        f"heavy=[m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "Exit codes:" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().out


@pytest.mark.usefixtures("clean_env")
def test_config_show_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONTAGE_LLM__ANTHROPIC_API_KEY", "secret-value")
    assert main(["config", "show", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "settings_v2"
    assert data["settings"]["llm.anthropic_api_key"]["value"] == "**********"


@pytest.mark.usefixtures("clean_env")
def test_config_error_exit_code(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONTAGE_MEDIA__CRF", "99")
    assert main(["config", "show"]) == 2
    err = capsys.readouterr().err
    assert "MONTAGE_MEDIA__CRF" in err and "Traceback" not in err


@pytest.mark.usefixtures("clean_env")
def test_flags_roundtrip(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["flags", "set", "USE_SETTINGS_V2", "false"]) == 0
    assert json.loads((tmp_path / "var" / "flags.json").read_text()) == {"USE_SETTINGS_V2": False}
    capsys.readouterr()
    assert main(["flags", "get", "USE_SETTINGS_V2"]) == 0
    assert capsys.readouterr().out.strip() == "false"
    assert main(["flags", "get", "NOPE"]) == 1
    assert main(["config", "show"]) == 0
    assert capsys.readouterr().out.startswith("Config source=legacy")


def test_console_script_installed() -> None:
    exe = Path(sys.executable).parent / "montage"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert out.returncode == 0 and out.stdout.startswith("montage ")
