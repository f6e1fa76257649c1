"""The DaVinci Resolve bridge, loaded by path (never sys.path) from a stand-in module file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from montage.errors import ConfigError, ToolMissing
from montage.media.resolve import MODULE_NAME, import_timeline, load_resolve_module

STAND_IN = """
CALLS = []

class _Timeline:
    def __init__(self, name):
        self.name = name
    def GetName(self):
        return self.name

class _MediaPool:
    def ImportTimelineFromFile(self, path, options):
        CALLS.append((path, options))
        return _Timeline(options["timelineName"]) if path.endswith((".otio", ".edl")) else None

class _Project:
    def GetMediaPool(self):
        return _MediaPool()

class _Manager:
    def GetCurrentProject(self):
        return None if RUNNING == "no project" else _Project()

class _Resolve:
    def GetProjectManager(self):
        return _Manager()

RUNNING = "yes"

def scriptapp(name):
    assert name == "Resolve"
    return None if RUNNING == "no" else _Resolve()
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    path = tmp_path / "Resolve Scripting" / "DaVinciResolveScript.py"
    path.parent.mkdir()
    path.write_text(STAND_IN)
    return path


def test_loads_by_path_and_imports_timeline(stand_in: Path, tmp_path: Path) -> None:
    before = list(sys.path)
    module = load_resolve_module(stand_in)
    assert sys.path == before and str(stand_in.parent) not in sys.path
    assert module.__name__ == MODULE_NAME and MODULE_NAME not in sys.modules
    assert import_timeline(module, tmp_path / "montage.otio", "Montage 1") == "Montage 1"
    assert module.CALLS == [(str(tmp_path / "montage.otio"), {"timelineName": "Montage 1", "importSourceClips": True})]
    with pytest.raises(ToolMissing, match="could not import"):
        import_timeline(module, tmp_path / "montage.mp4", "x")
    module.RUNNING = "no project"
    with pytest.raises(ToolMissing, match="no open project"):
        import_timeline(module, tmp_path / "montage.otio", "x")
    module.RUNNING = "no"
    with pytest.raises(ToolMissing, match="not running"):
        import_timeline(module, tmp_path / "montage.otio", "x")


def test_bad_module_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MONTAGE_MEDIA__RESOLVE_MODULE"):
        load_resolve_module(tmp_path / "missing.py")
    wrong = tmp_path / "other.py"
    wrong.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="no scriptapp"):
        load_resolve_module(wrong)
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('fusionscript.so not found')\n")
    with pytest.raises(ToolMissing, match="fusionscript.so"):
        load_resolve_module(broken)
    data = tmp_path / "data.txt"
    data.write_text("scriptapp = 1")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_resolve_module(data)
