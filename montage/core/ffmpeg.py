"""The one ffmpeg/ffprobe locator, so a render, the perf guard and a bundle name the same binary.

Order: the configured path (``settings.media.ffmpeg``; callers without settings pass nothing and
the environment is read: ``MONTAGE_MEDIA__FFMPEG``, then the legacy ``MONTAGE_FFMPEG``), then
``ffmpeg`` on PATH, then the binary the ``imageio-ffmpeg`` wheel bundles (imported lazily, only
then), so a fresh machine without a system ffmpeg still works.  ffprobe is optional: the configured
one, else the one next to the chosen ffmpeg (both from one build), else none.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from montage.core import proc
from montage.errors import ToolMissing

ENV_VARS = ("MONTAGE_MEDIA__FFMPEG", "MONTAGE_FFMPEG")
PROBE_ENV_VARS = ("MONTAGE_MEDIA__FFPROBE", "MONTAGE_FFPROBE")
_VERSION_RE = re.compile(r"ffmpeg version (\S+)")


@dataclass(frozen=True)
class Located:
    """The binaries found, and where the ffmpeg came from: "settings", "PATH" or "imageio-ffmpeg"."""

    ffmpeg: str
    source: str
    ffprobe: str | None


def resolve(name: str) -> str | None:
    """An executable: a path (with a separator) must exist and be executable; a bare name is looked up on PATH."""
    if os.sep in name or (os.altsep and os.altsep in name):
        path = Path(name).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(name)


def bundled_ffmpeg() -> str | None:
    """The ffmpeg binary the imageio-ffmpeg wheel ships, if that package is installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None
    return str(exe) if exe and Path(exe).is_file() else None


def _from_env(names: tuple[str, ...], environ: Mapping[str, str] | None) -> str | None:
    env = os.environ if environ is None else environ
    return next((env[n] for n in names if env.get(n)), None)


def locate(
    ffmpeg: str | None = None, ffprobe: str | None = None, *, environ: Mapping[str, str] | None = None
) -> Located:
    """Find ffmpeg (and ffprobe); :class:`ToolMissing` (exit 7) when there is no ffmpeg.

    ``ffmpeg``/``ffprobe`` are the configured values (settings); when None the environment
    variables above are consulted.
    """
    configured = ffmpeg or _from_env(ENV_VARS, environ)
    if configured:
        path = resolve(configured)
        if path is None:
            raise ToolMissing(
                f"The configured ffmpeg {configured!r} (setting media.ffmpeg / MONTAGE_MEDIA__FFMPEG) does not "
                "exist or is not executable.",
                hint="Unset it to use ffmpeg from PATH or the one bundled by imageio-ffmpeg.",
            )
        source = "settings"
    else:
        path, source = shutil.which("ffmpeg"), "PATH"
        if path is None:
            path, source = bundled_ffmpeg(), "imageio-ffmpeg"
        if path is None:
            raise ToolMissing(
                "No ffmpeg found: not configured (MONTAGE_MEDIA__FFMPEG), not on PATH, and the imageio-ffmpeg "
                "package has no bundled binary.",
                hint="Install it with: apt-get install ffmpeg (or pip install imageio-ffmpeg).",
            )
    probe_configured = ffprobe or _from_env(PROBE_ENV_VARS, environ)
    probe = resolve(probe_configured) if probe_configured else None
    if probe_configured and probe is None:
        raise ToolMissing(f"The configured ffprobe {probe_configured!r} (setting media.ffprobe) does not exist.")
    if probe is None and source != "imageio-ffmpeg":
        # The ffprobe next to the chosen ffmpeg (or next to the file a symlink points at): one build.
        for base in dict.fromkeys([Path(path), Path(os.path.realpath(path))]):
            sibling = base.with_name("ffprobe")
            if sibling.is_file() and os.access(sibling, os.X_OK):
                probe = str(sibling)
                break
    return Located(ffmpeg=path, source=source, ffprobe=probe)


@lru_cache(maxsize=16)
def version_line(binary: str) -> str:
    """The first line ``binary -version`` prints ("ffmpeg version 5.1.6-0+deb12u1 Copyright ...")."""
    done = proc.run([binary, "-hide_banner", "-version"], timeout_s=30.0)
    first = done.stdout.splitlines()[0].strip() if done.stdout.strip() else ""
    if done.returncode != 0 or _VERSION_RE.search(first) is None:
        raise ToolMissing(f"{binary!r} does not behave like ffmpeg (exit {done.returncode}, printed {first[:80]!r}).")
    return first


def version(binary: str) -> str:
    """The version token of ``binary`` ("5.1.6-0+deb12u1"); :class:`ToolMissing` when it is not ffmpeg."""
    match = _VERSION_RE.search(version_line(binary))
    assert match is not None  # version_line checked it
    return match.group(1)
