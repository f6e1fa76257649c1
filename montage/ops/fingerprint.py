"""Fingerprints recorded in bundles: inputs (content hashes), git state, tools, host."""

from __future__ import annotations

import hashlib
import platform
import sys
from fnmatch import fnmatchcase
from importlib import metadata
from pathlib import Path
from typing import Any

from montage.core import ffmpeg as core_ffmpeg
from montage.core import git as core_git
from montage.core.files import sha256_file
from montage.errors import ToolMissing

# Generated or bundle files never count as inputs, so committing a bundle cannot make it STALE.
NEVER_INPUTS = ["proofs/*", "phases/schema.json", "phases/.index.json", "var/*", ".nox/*", "*.pyc"]
PACKAGES = ["pydantic", "PyYAML", "Jinja2", "nox", "invoke", "pytest", "coverage", "ruff", "mypy", "montage"]


def repo_files(repo_root: Path) -> list[str]:
    """Tracked plus untracked-not-ignored files (git), else every file under the root."""
    files = core_git.repo_files(repo_root)
    if files is not None:
        return files
    return sorted(p.relative_to(repo_root).as_posix() for p in repo_root.rglob("*") if p.is_file())


def input_files(repo_root: Path, globs: list[str]) -> dict[str, str]:
    """``{path: sha256}`` of the files matched by ``globs`` (``*`` matches across ``/``)."""
    out: dict[str, str] = {}
    for rel in repo_files(repo_root):
        if any(fnmatchcase(rel, g) for g in NEVER_INPUTS):
            continue
        if any(fnmatchcase(rel, g) for g in globs):
            path = repo_root / rel
            if path.is_file():
                out[rel] = sha256_file(path)
    return out


def combine(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{files[rel]}\n".encode())
    return digest.hexdigest()


def changed_inputs(old: dict[str, str], new: dict[str, str]) -> list[str]:
    out = [f"changed {p}" for p in sorted(old.keys() & new.keys()) if old[p] != new[p]]
    out += [f"added {p}" for p in sorted(new.keys() - old.keys())]
    out += [f"removed {p}" for p in sorted(old.keys() - new.keys())]
    return out


def git_state(repo_root: Path, proofs_dir: Path | None = None) -> dict[str, Any]:
    """HEAD and whether tracked files differ from it (committed bundles being replaced do not count)."""
    state = core_git.repo_state(repo_root, proofs_dir)
    return {"commit": state.commit, "dirty": state.dirty}


def _ffmpeg() -> dict[str, str | None]:
    """The ffmpeg a render would use (:func:`montage.core.ffmpeg.locate`), its version and where it came from."""
    try:
        found = core_ffmpeg.locate()
        return {"ffmpeg": core_ffmpeg.version(found.ffmpeg), "ffmpeg_path": found.ffmpeg, "ffmpeg_source": found.source}
    except ToolMissing:
        return {"ffmpeg": None, "ffmpeg_path": None, "ffmpeg_source": None}


def tool_versions() -> dict[str, Any]:
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), **_ffmpeg(), "packages": packages}


def host_fingerprint() -> dict[str, Any]:
    import os

    info = {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }
    info["id"] = hashlib.sha256(repr(sorted(info.items())).encode()).hexdigest()[:16]
    return info
