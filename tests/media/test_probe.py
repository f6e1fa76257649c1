"""Probing: typed info from ffprobe and PyAV, and the bad-input matrix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from montage.errors import ExitCode, MediaError
from montage.media.ffmpeg import FFmpegTools
from montage.media.video_processor import file_sha256, probe

from .conftest import run_ffmpeg_cmd

pytestmark = pytest.mark.slow


@pytest.fixture(params=["ffprobe", "pyav"])
def probe_tools(request: pytest.FixtureRequest, tools: FFmpegTools) -> FFmpegTools | None:
    if request.param == "pyav":
        return replace(tools, ffprobe=None)
    assert tools.ffprobe, "this machine has ffprobe next to ffmpeg"
    return tools


def test_story_clip(story_clip: Path, probe_tools: FFmpegTools | None) -> None:
    info = probe(story_clip, probe_tools)
    assert info.prober == ("pyav" if probe_tools is None or probe_tools.ffprobe is None else "ffprobe")
    assert abs(info.duration - 24.0) < 0.1
    v = info.video[0]
    assert (v.width, v.height, v.fps, v.pix_fmt, v.rotation) == (320, 180, Fraction(30), "yuv420p", 0)
    assert v.dar == Fraction(16, 9) and not v.variable_frame_rate
    a = info.audio[0]
    assert (a.sample_rate, a.channels) == (48000, 1)
    data = info.to_json()
    assert data["video"][0]["fps"] == "30/1" and data["video"][0]["display_width"] == 320


def test_surround_and_rotation(tools: FFmpegTools, media_dir: Path, probe_tools: FFmpegTools | None) -> None:
    path = media_dir / "phone.mp4"
    if not path.exists():
        raw = media_dir / "phone-raw.mp4"
        run_ffmpeg_cmd(tools, ["-f", "lavfi", "-i", "testsrc2=s=320x240:r=30:d=2", "-f", "lavfi", "-i",
                               "sine=f=300:d=2", "-ac", "6", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                               "-shortest", str(raw)])  # fmt: skip
        run_ffmpeg_cmd(tools, ["-i", str(raw), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(path)])
    info = probe(path, probe_tools)
    v = info.video[0]
    assert v.rotation in (90, 270)
    assert (v.display_width, v.display_height) == (240, 320) and v.dar == Fraction(3, 4)
    assert info.audio[0].channels == 6 and info.audio[0].layout == "5.1"


def test_anamorphic(make_clip: Callable[..., Path], probe_tools: FFmpegTools | None) -> None:
    clip = make_clip("anamorphic.mp4", video="testsrc2=s=320x240:r=25:d=2", extra=["-vf", "setsar=4/3"])
    v = probe(clip, probe_tools).video[0]
    assert v.sar == Fraction(4, 3) and (v.display_width, v.display_height) == (427, 240)


def test_video_only_and_audio_only(make_clip: Callable[..., Path], probe_tools: FFmpegTools | None) -> None:
    video = probe(make_clip("v.mp4", video="testsrc2=s=64x36:r=25:d=2"), probe_tools)
    assert video.has_video and not video.has_audio
    audio = probe(make_clip("a.m4a", audio="sine=d=2"), probe_tools)
    assert audio.has_audio and not audio.has_video


def _bad_inputs(tmp: Path, story_clip: Path) -> dict[str, Path]:
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(story_clip.read_bytes()[: story_clip.stat().st_size // 3])  # moov atom is at the end
    return {"zero bytes": empty, "not media": text, "truncated": truncated, "missing": tmp / "missing.mp4",
            "directory": tmp}  # fmt: skip


@pytest.mark.parametrize("case", ["zero bytes", "not media", "truncated", "missing", "directory"])
def test_bad_inputs(case: str, story_clip: Path, tmp_path: Path, probe_tools: FFmpegTools | None) -> None:
    path = _bad_inputs(tmp_path, story_clip)[case]
    with pytest.raises(MediaError) as info:
        probe(path, probe_tools)
    message = str(info.value)
    assert info.value.exit_code == ExitCode.MEDIA
    assert str(path) in message and "\n" not in message


def test_sha256_is_content_hash(story_clip: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(story_clip.read_bytes())
    assert file_sha256(copy) == file_sha256(story_clip) and len(file_sha256(copy)) == 64


def test_subtitles_only_and_raw_stream(tools: FFmpegTools, media_dir: Path, probe_tools: FFmpegTools | None) -> None:
    srt = media_dir / "only.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    subs = media_dir / "subs-only.mkv"
    if not subs.exists():
        run_ffmpeg_cmd(tools, ["-i", str(srt), str(subs)])
    with pytest.raises(MediaError, match="neither a video nor an audio stream"):
        probe(subs, probe_tools)
    raw = media_dir / "raw.h264"
    if not raw.exists():
        run_ffmpeg_cmd(
            tools, ["-f", "lavfi", "-i", "testsrc2=s=64x36:r=25:d=1", "-c:v", "libx264", "-f", "h264", str(raw)]
        )
    try:
        info = probe(raw, probe_tools)
    except MediaError as exc:  # an elementary stream may carry no duration at all
        assert "no usable duration" in str(exc)
    else:
        assert info.duration > 0 and info.video[0].width == 64


def test_probe_timeout(story_clip: Path, tools: FFmpegTools, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An ffprobe that hangs is stopped after PROBE_TIMEOUT_S (a real process that sleeps)."""
    import dataclasses

    from montage.media import video_processor as vp

    hang = tmp_path / "ffprobe"
    hang.write_text("#!/bin/sh\nexec sleep 60\n")
    hang.chmod(0o755)
    monkeypatch.setattr(vp, "PROBE_TIMEOUT_S", 0.5)
    with pytest.raises(MediaError, match="took longer than"):
        probe(story_clip, dataclasses.replace(tools, ffprobe=str(hang)))


def test_parsing_helpers() -> None:
    from montage.media import video_processor as vp

    assert vp._fraction("30000/1001") == Fraction(30000, 1001) and vp._fraction("4:3") == Fraction(4, 3)
    assert vp._fraction("x/y") == 0 and vp._fraction("1/0") == 0 and vp._fraction(None, Fraction(1)) == 1
    assert vp._rotation(None) == 0 and vp._rotation(-90) == 270 and vp._rotation(90.4) == 90
    assert vp._duration("N/A", [None, "2.5"]) == 2.5 and vp._duration(None, ["nan"]) == 0.0


def test_interlaced_flag(make_clip: Callable[..., Path], probe_tools: FFmpegTools | None) -> None:
    clip = make_clip("interlaced.ts", video="testsrc2=s=320x180:r=25:d=1",
                     extra=["-c:v", "mpeg2video", "-flags", "+ilme+ildct", "-top", "1"])  # fmt: skip
    assert probe(clip, probe_tools).video[0].interlaced
    assert not probe(make_clip("progressive.mp4", video="testsrc2=s=64x36:r=25:d=1"), probe_tools).video[0].interlaced
