"""ffmpeg discovery and the runner: real ffmpeg, plus a fake binary only for failure modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from montage.core import ffmpeg as core_ffmpeg
from montage.errors import ExitCode, MediaError, ToolMissing
from montage.media import ffmpeg as ff
from montage.media.ffmpeg import FFmpegTools, find_tools, run_ffmpeg


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_path_ffmpeg_has_version_and_ffprobe(tools: FFmpegTools) -> None:
    assert Path(tools.ffmpeg).is_file() and tools.ffmpeg_version
    assert tools.fingerprint()["ffmpeg_version"] == tools.ffmpeg_version


def test_configured_binary_wins(tools: FFmpegTools) -> None:
    found = find_tools(tools.ffmpeg)
    assert found.ffmpeg_source == "settings" and found.ffmpeg == tools.ffmpeg


def test_configured_binary_missing_is_tool_missing(tmp_path: Path) -> None:
    with pytest.raises(ToolMissing) as info:
        find_tools(str(tmp_path / "nope" / "ffmpeg"))
    assert info.value.exit_code == ExitCode.TOOL_MISSING
    assert "MONTAGE_MEDIA__FFMPEG" in str(info.value)


def test_configured_ffprobe_missing(tools: FFmpegTools, tmp_path: Path) -> None:
    with pytest.raises(ToolMissing, match="ffprobe"):
        find_tools(tools.ffmpeg, str(tmp_path / "ffprobe"))


def test_binary_that_is_not_ffmpeg(tmp_path: Path) -> None:
    fake = _script(tmp_path / "ffmpeg", "echo 'hello'\n")
    core_ffmpeg.version_line.cache_clear()
    with pytest.raises(ToolMissing, match="does not behave like ffmpeg"):
        find_tools(str(fake))


def test_falls_back_to_imageio_ffmpeg_without_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg, no ffprobe
    found = find_tools()
    assert found.ffmpeg_source == "imageio-ffmpeg" and found.ffprobe is None
    assert "imageio_ffmpeg" in found.ffmpeg


def test_no_ffmpeg_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(core_ffmpeg, "bundled_ffmpeg", lambda: None)
    with pytest.raises(ToolMissing, match="No ffmpeg found") as info:
        find_tools()
    assert "apt-get install ffmpeg" in str(info.value)


def test_settings_select_binary(tools: FFmpegTools, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONTAGE_MEDIA__FFMPEG", tools.ffmpeg)
    monkeypatch.setenv("MONTAGE_MEDIA__THREADS", "1")
    found = ff.tools_from_settings()
    assert found.ffmpeg_source == "settings" and found.threads == 1


def test_legacy_variable_selects_binary(tools: FFmpegTools, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USE_SETTINGS_V2", "false")
    monkeypatch.setenv("MONTAGE_FFMPEG", tools.ffmpeg)
    with pytest.warns(DeprecationWarning):
        found = ff.tools_from_settings()
    assert found.ffmpeg_source == "settings"


def test_progress_reaches_one(tools: FFmpegTools) -> None:
    seen: list[float] = []
    run_ffmpeg(tools, ["-f", "lavfi", "-i", "testsrc2=s=64x36:r=25:d=3", "-f", "null", "-"], what="test",
               total_s=3.0, progress=seen.append)  # fmt: skip
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


def test_failure_carries_stderr_tail(tools: FFmpegTools) -> None:
    with pytest.raises(MediaError) as info:
        run_ffmpeg(tools, ["-f", "lavfi", "-i", "nosuchsource=x", "-f", "null", "-"], what="bad graph")
    assert info.value.exit_code == ExitCode.MEDIA
    assert "bad graph" in str(info.value) and "nosuchsource" in info.value.stderr_tail


def test_timeout_stops_ffmpeg(tools: FFmpegTools) -> None:
    with pytest.raises(MediaError, match="did not finish"):
        run_ffmpeg(tools, ["-re", "-f", "lavfi", "-i", "testsrc2=s=64x36:r=25", "-f", "null", "-"], what="endless",
                   timeout_s=1.0)  # fmt: skip


def test_unstartable_binary(tools: FFmpegTools, tmp_path: Path) -> None:
    broken = FFmpegTools(str(tmp_path / "gone"), "0", "settings", None)
    with pytest.raises(ToolMissing):
        run_ffmpeg(broken, ["-version"], what="x")


def test_check_false_returns_result(tools: FFmpegTools) -> None:
    result = run_ffmpeg(tools, ["-f", "lavfi", "-i", "nosuch", "-f", "null", "-"], what="x", check=False)
    assert result.returncode != 0 and result.elapsed_s >= 0 and result.stderr_tail


def test_last_error_line_skips_stats() -> None:
    assert ff._last_error_line("real problem\nframe=  10 fps\n") == "real problem"
    assert ff._last_error_line("") == "no message"


def fake_ffmpeg_failing_midway(tmp_path: Path, real: FFmpegTools) -> FFmpegTools:
    """An ffmpeg that writes half an output and dies: a failure real ffmpeg can't be made to show on demand."""
    script = _script(
        tmp_path / "fake-ffmpeg",
        f'for last; do :; done\ncase "$*" in *-f\\ mp4*) printf partial > "${{last#file:}}"; '
        f'echo "Conversion failed: disk on fire" >&2; exit 1;; esac\nexec {real.ffmpeg} "$@"\n',
    )
    assert os.access(script, os.X_OK)
    return FFmpegTools(str(script), real.ffmpeg_version, "settings", real.ffprobe)


def test_filter_path_refuses_odd_characters(tmp_path: Path) -> None:
    assert ff.filter_path(Path("/tmp/montage-x/a.txt")) == "/tmp/montage-x/a.txt"
    for odd in ("/tmp/a b/x.txt", "/tmp/it's/x", "/tmp/a:b/x", "/tmp/[x]/y", "/tmp/a,b"):
        with pytest.raises(MediaError, match="TMPDIR"):
            ff.filter_path(Path(odd))
