"""Environment fingerprint: what must be equal for two measurements to be comparable."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from montage.core import ffmpeg as core_ffmpeg
from montage.core import git as core_git
from montage.ops.perf.workload import Clip, Workload

# The fields compared; anything else in the fingerprint is informational.
COMPARED = ("ffmpeg_path", "ffmpeg_version", "cpu_model", "cores", "kernel", "python", "input_sha256", "command")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ffmpeg_version(ffmpeg: str) -> str:
    return core_ffmpeg.version_line(ffmpeg)


def fingerprint(*, ffmpeg: str, clip: Clip, workload: Workload) -> dict[str, Any]:
    """The fingerprint of this machine, ffmpeg build, input and command."""
    return {
        "ffmpeg_path": ffmpeg,
        "ffmpeg_version": ffmpeg_version(ffmpeg),
        "cpu_model": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "input_sha256": clip.sha256,
        "command": workload.command_template(),
        "host": platform.node(),
        "workload_kind": workload.kind,
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Names of the compared fields that differ between two fingerprints."""
    return [name for name in COMPARED if a.get(name) != b.get(name)]


def git_state(repo: Path) -> tuple[str, bool]:
    """(HEAD commit, dirty flag) of ``repo``; ("", False) when it is not a git work tree."""
    state = core_git.repo_state(repo)
    return state.commit or "", bool(state.dirty)
