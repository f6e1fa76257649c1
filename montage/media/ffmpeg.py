"""ffmpeg access: which binary runs, its version, and a runner with timeouts and progress.

Discovery order: ``settings.media.ffmpeg`` (``MONTAGE_MEDIA__FFMPEG``, legacy ``MONTAGE_FFMPEG``), then
``ffmpeg`` on PATH, then the binary the ``imageio-ffmpeg`` wheel bundles, so a fresh machine without a
system ffmpeg still works.  ffprobe is optional: :mod:`montage.media.video_processor` probes with PyAV
(whose wheels bundle the FFmpeg libraries) when there is none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from montage.errors import MediaError, ToolMissing

if TYPE_CHECKING:
    from montage.settings import Settings

ProgressCallback = Callable[[float], None]
"""Called with the fraction done (0..1) while ffmpeg runs."""

STDERR_TAIL_LINES = 25
_VERSION_RE = re.compile(r"ffmpeg version (\S+)")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")


@dataclass(frozen=True)
class FFmpegTools:
    """The binaries Montage runs, with their versions (recorded in plans and fingerprints)."""

    ffmpeg: str
    ffmpeg_version: str
    ffmpeg_source: str  # "settings", "PATH" or "imageio-ffmpeg"
    ffprobe: str | None
    timeout_s: float = 3600.0
    threads: int = 2

    def fingerprint(self) -> dict[str, str | None]:
        return {
            "ffmpeg": self.ffmpeg,
            "ffmpeg_version": self.ffmpeg_version,
            "ffmpeg_source": self.ffmpeg_source,
            "ffprobe": self.ffprobe,
        }


@lru_cache(maxsize=16)
def _version_of(binary: str) -> str:
    try:
        out = subprocess.run([binary, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolMissing(f"ffmpeg binary {binary!r} cannot be run: {exc}.") from exc
    match = _VERSION_RE.search(out.stdout)
    if out.returncode != 0 or match is None:
        raise ToolMissing(
            f"{binary!r} does not behave like ffmpeg (exit {out.returncode}, printed {out.stdout[:80]!r})."
        )
    return match.group(1)


def _resolve(name: str) -> str | None:
    if os.sep in name or (os.altsep and os.altsep in name):
        path = Path(name).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(name)


def _bundled_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None
    return str(exe) if exe and Path(exe).is_file() else None


def find_tools(
    ffmpeg: str | None = None, ffprobe: str | None = None, *, timeout_s: float = 3600.0, threads: int = 2
) -> FFmpegTools:
    """Locate ffmpeg (and ffprobe, optional); raise :class:`ToolMissing` (exit 7) when there is no ffmpeg."""
    if ffmpeg:
        path = _resolve(ffmpeg)
        if path is None:
            raise ToolMissing(
                f"The configured ffmpeg {ffmpeg!r} (setting media.ffmpeg / MONTAGE_MEDIA__FFMPEG) does not exist "
                "or is not executable.",
                hint="Unset it to use ffmpeg from PATH or the one bundled by imageio-ffmpeg.",
            )
        source = "settings"
    else:
        path = shutil.which("ffmpeg")
        source = "PATH"
        if path is None:
            path = _bundled_ffmpeg()
            source = "imageio-ffmpeg"
        if path is None:
            raise ToolMissing(
                "No ffmpeg found: not configured (MONTAGE_MEDIA__FFMPEG), not on PATH, and the imageio-ffmpeg "
                "package has no bundled binary.",
                hint="Install it with: apt-get install ffmpeg (or pip install imageio-ffmpeg).",
            )
    probe_path = _resolve(ffprobe) if ffprobe else None
    if ffprobe and probe_path is None:
        raise ToolMissing(f"The configured ffprobe {ffprobe!r} (setting media.ffprobe) does not exist.")
    if probe_path is None and not ffprobe and source != "imageio-ffmpeg":
        # Prefer the ffprobe that sits next to the chosen ffmpeg, so both come from one build.
        sibling = Path(path).with_name("ffprobe")
        probe_path = str(sibling) if sibling.is_file() and os.access(sibling, os.X_OK) else None
    return FFmpegTools(
        ffmpeg=path,
        ffmpeg_version=_version_of(path),
        ffmpeg_source=source,
        ffprobe=probe_path,
        timeout_s=timeout_s,
        threads=threads,
    )


def tools_from_settings(settings: Settings | None = None) -> FFmpegTools:
    """:func:`find_tools` configured from ``settings`` (a command passes its own; else they are loaded)."""
    if settings is None:
        from montage.settings import load_settings

        settings = load_settings().settings
    media = settings.media
    return find_tools(media.ffmpeg, media.ffprobe, timeout_s=media.timeout_s, threads=media.threads)


@dataclass(frozen=True)
class RunResult:
    argv: list[str]
    returncode: int
    stderr: str
    elapsed_s: float

    @property
    def stderr_tail(self) -> str:
        return tail(self.stderr)


def filter_path(path: Path) -> str:
    """``path`` for use inside a filter argument; only Montage's own temp paths go there, and only plain ones.

    Filter-graph escaping has two levels and ffmpeg-python gets one of them wrong, so instead of
    escaping, a path with anything but letters, digits, ``_ . / -`` is refused.
    """
    text = str(path)
    if not _SAFE_PATH.match(text):
        raise MediaError(
            f"Temporary path {text!r} has characters unsafe in an ffmpeg filter; set TMPDIR to a plain path."
        )
    return text


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _parse_progress(stream: object, total_s: float | None, callback: ProgressCallback | None) -> None:
    """Read ``-progress pipe:1`` key=value lines; report out_time as a fraction of ``total_s``."""
    for raw in stream:  # type: ignore[attr-defined]
        line = raw.decode("utf-8", "replace").strip() if isinstance(raw, bytes) else str(raw).strip()
        if callback is None or not total_s:
            continue
        key, _, value = line.partition("=")
        if key in {"out_time_us", "out_time_ms"} and value.strip().lstrip("-").isdigit():
            # ffmpeg prints microseconds under both names (out_time_ms is a historical misnomer).
            callback(min(1.0, max(0.0, int(value) / 1e6 / total_s)))
        elif key == "progress" and value == "end":
            callback(1.0)


def run_ffmpeg(
    tools: FFmpegTools,
    args: Sequence[str],
    *,
    what: str,
    total_s: float | None = None,
    progress: ProgressCallback | None = None,
    timeout_s: float | None = None,
    check: bool = True,
) -> RunResult:
    """Run ``ffmpeg ARGS`` (argv list, never a shell) and return its stderr.

    ``what`` describes the job for error messages ("render of montage.mp4").  With ``progress`` the
    run adds ``-progress pipe:1`` and reports the fraction of ``total_s`` done.  A non-zero exit raises
    :class:`MediaError` (exit 8) with ffmpeg's stderr tail; a timeout kills ffmpeg and raises too.
    """
    argv = [tools.ffmpeg, "-hide_banner", "-nostdin", "-y", "-progress", "pipe:1", "-nostats", *args]
    timeout = tools.timeout_s if timeout_s is None else timeout_s
    started = time.monotonic()
    errbuf: deque[str] = deque(maxlen=4000)
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise ToolMissing(f"Cannot start ffmpeg {tools.ffmpeg!r} for the {what}: {exc}.") from exc

    def _drain_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            errbuf.append(raw.decode("utf-8", "replace").rstrip("\n"))

    err_thread = threading.Thread(target=_drain_stderr, daemon=True)
    out_thread = threading.Thread(target=_parse_progress, args=(proc.stdout, total_s, progress), daemon=True)
    err_thread.start()
    out_thread.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.wait()
        err_thread.join(timeout=10)
        out_thread.join(timeout=10)
    stderr = "\n".join(errbuf)
    result = RunResult(argv=argv, returncode=proc.returncode, stderr=stderr, elapsed_s=time.monotonic() - started)
    if timed_out:
        raise MediaError(
            f"ffmpeg did not finish the {what} within {timeout:g} s and was stopped "
            "(setting media.timeout_s / MONTAGE_MEDIA__TIMEOUT_S).",
            stderr_tail=result.stderr_tail,
        )
    if check and proc.returncode != 0:
        raise MediaError(
            f"ffmpeg failed during the {what} (exit {proc.returncode}): {_last_error_line(stderr)}",
            stderr_tail=result.stderr_tail,
        )
    return result


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith(("frame=", "size=", "video:", "[out#", "Press [q]")):
            return line
    return "no message"
