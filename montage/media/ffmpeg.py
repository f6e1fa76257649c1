"""ffmpeg access: which binary runs, its version, and a runner with timeouts and progress.

Discovery is :mod:`montage.core.ffmpeg`'s (the one locator): ``settings.media.ffmpeg``
(``MONTAGE_MEDIA__FFMPEG``, legacy ``MONTAGE_FFMPEG``), then ``ffmpeg`` on PATH, then the binary the
``imageio-ffmpeg`` wheel bundles, so a fresh machine without a system ffmpeg still works.  ffprobe
is optional: :mod:`montage.media.video_processor` probes with PyAV (whose wheels bundle the FFmpeg
libraries) when there is none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from montage.core import ffmpeg as core_ffmpeg
from montage.core import proc
from montage.errors import MediaError, ToolMissing

if TYPE_CHECKING:
    from montage.settings import Settings

ProgressCallback = Callable[[float], None]
"""Called with the fraction done (0..1) while ffmpeg runs."""

STDERR_TAIL_LINES = 25
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


def find_tools(
    ffmpeg: str | None = None, ffprobe: str | None = None, *, timeout_s: float = 3600.0, threads: int = 2
) -> FFmpegTools:
    """Locate ffmpeg (and ffprobe, optional) with :func:`montage.core.ffmpeg.locate`; raise
    :class:`ToolMissing` (exit 7) when there is no ffmpeg."""
    # The caller's settings already applied the environment: do not read it a second time.
    found = core_ffmpeg.locate(ffmpeg, ffprobe, environ={})
    return FFmpegTools(
        ffmpeg=found.ffmpeg,
        ffmpeg_version=core_ffmpeg.version(found.ffmpeg),
        ffmpeg_source=found.source,
        ffprobe=found.ffprobe,
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


def _progress_parser(total_s: float | None, callback: ProgressCallback | None) -> Callable[[str], None]:
    """A line handler for ``-progress pipe:1`` key=value lines: out_time as a fraction of ``total_s``."""

    def on_line(raw: str) -> None:
        line = raw.strip()
        if callback is None or not total_s:
            return
        key, _, value = line.partition("=")
        if key in {"out_time_us", "out_time_ms"} and value.strip().lstrip("-").isdigit():
            # ffmpeg prints microseconds under both names (out_time_ms is a historical misnomer).
            callback(min(1.0, max(0.0, int(value) / 1e6 / total_s)))
        elif key == "progress" and value == "end":
            callback(1.0)

    return on_line


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
    """Run ``ffmpeg ARGS`` (argv list, never a shell) with :func:`montage.core.proc.run`; return its stderr.

    ``what`` describes the job for error messages ("render of montage.mp4").  With ``progress`` the
    run adds ``-progress pipe:1`` and reports the fraction of ``total_s`` done.  A non-zero exit raises
    :class:`MediaError` (exit 8) with ffmpeg's stderr tail; a timeout kills ffmpeg and raises too.
    """
    argv = [tools.ffmpeg, "-hide_banner", "-nostdin", "-y", "-progress", "pipe:1", "-nostats", *args]
    timeout = tools.timeout_s if timeout_s is None else timeout_s
    try:
        # new_session=False: ffmpeg stays in the job's process group, so the worker's killpg stops it too.
        done = proc.run(argv, timeout_s=timeout, on_stdout_line=_progress_parser(total_s, progress),
                        tail_lines=4000, new_session=False)  # fmt: skip
    except ToolMissing as exc:
        raise ToolMissing(f"Cannot start ffmpeg {tools.ffmpeg!r} for the {what}: {exc}.") from exc
    result = RunResult(argv=argv, returncode=done.returncode, stderr=done.stderr, elapsed_s=done.duration_s)
    if done.timed_out:
        raise MediaError(
            f"ffmpeg did not finish the {what} within {timeout:g} s and was stopped "
            "(setting media.timeout_s / MONTAGE_MEDIA__TIMEOUT_S).",
            stderr_tail=result.stderr_tail,
        )
    if check and done.returncode != 0:
        raise MediaError(
            f"ffmpeg failed during the {what} (exit {done.returncode}): {_last_error_line(done.stderr)}",
            stderr_tail=result.stderr_tail,
        )
    return result


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith(("frame=", "size=", "video:", "[out#", "Press [q]")):
            return line
    return "no message"
