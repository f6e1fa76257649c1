"""DaVinci Resolve bridge: import the exported timeline into the running Resolve.

Resolve ships its scripting module (``DaVinciResolveScript.py``) outside site-packages.  The old
system appended its folder to ``sys.path``; here the module is loaded from the configured path
(setting ``media.resolve_module`` / ``MONTAGE_MEDIA__RESOLVE_MODULE``) with
``importlib.util.spec_from_file_location``, so nothing else on that folder can shadow our imports.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from montage.errors import ConfigError, ToolMissing

MODULE_NAME = "montage_resolve_bridge_DaVinciResolveScript"


def load_resolve_module(path: Path) -> ModuleType:
    """Load Resolve's scripting module from ``path`` (never via sys.path)."""
    if not path.is_file():
        raise ConfigError(
            f"MONTAGE_MEDIA__RESOLVE_MODULE={str(path)!r} (setting media.resolve_module) is not a file; expected the "
            "path of DaVinciResolveScript.py from Resolve's Developer/Scripting/Modules folder."
        )
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{str(path)!r} (setting media.resolve_module) cannot be loaded as a Python module.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ToolMissing(f"Loading DaVinci Resolve's scripting module {str(path)!r} failed: {exc}.") from exc
    if not hasattr(module, "scriptapp"):
        raise ConfigError(f"{str(path)!r} has no scriptapp(); it is not DaVinciResolveScript.py.")
    return module


def import_timeline(module: ModuleType, timeline_file: Path, name: str) -> str:
    """Import ``timeline_file`` (EDL or OTIO) into Resolve's current project; returns the timeline's name."""
    resolve: Any = module.scriptapp("Resolve")
    if resolve is None:
        raise ToolMissing("DaVinci Resolve is not running (scriptapp('Resolve') returned None); start it and retry.")
    project = resolve.GetProjectManager().GetCurrentProject()
    if project is None:
        raise ToolMissing("DaVinci Resolve has no open project; open one and retry.")
    timeline = project.GetMediaPool().ImportTimelineFromFile(
        str(timeline_file), {"timelineName": name, "importSourceClips": True}
    )
    if timeline is None:
        raise ToolMissing(f"DaVinci Resolve could not import {str(timeline_file)!r}.")
    return str(timeline.GetName())
