"""One-pass analysis on a clip whose cuts, black and silences are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage.media import analysis as an
from montage.media.ffmpeg import FFmpegTools
from montage.media.video_processor import file_sha256, probe

pytestmark = pytest.mark.slow


def _near(values: list[float], target: float, tol: float) -> bool:
    return any(abs(v - target) <= tol for v in values)


def test_features_match_the_clip(story_clip: Path, tools: FFmpegTools, tmp_path: Path) -> None:
    info = probe(story_clip, tools)
    seen: list[float] = []
    result = an.analyse(info, tools, sha256=file_sha256(story_clip), cache_dir=tmp_path, progress=seen.append)
    assert seen[-1] == 1.0
    assert result.windows == 48 and result.has_audio and result.has_video
    for cut in (6.0, 18.0):
        assert _near(result.scene_cuts, cut, 0.1), result.scene_cuts
    assert _near(result.scene_cuts, 12.0, 0.1) or _near(result.scene_cuts, 13.0, 0.1)
    assert any(abs(s - 12.0) < 0.2 and abs(e - 13.0) < 0.2 for s, e in result.blacks), result.blacks
    for start in (0.0, 6.0, 12.0, 18.0):
        assert any(abs(s - start) < 0.3 and abs(e - (start + 1.2)) < 0.3 for s, e in result.silences), result.silences
    quiet = [v for i, v in enumerate(result.loudness) if 3 <= i * 0.5 < 5.5]
    loud = [v for i, v in enumerate(result.loudness) if 15 <= i * 0.5 < 17.5]
    assert 7.0 < sum(loud) / len(loud) - sum(quiet) / len(quiet) < 13.0  # the clip's second half is +10 dB
    assert result.integrated_lufs is not None and -30 < result.integrated_lufs < -5
    assert all(0.0 <= x <= 1.0 for x in result.motion_x) and max(result.motion) > 0


def test_cache_hit_skips_ffmpeg(
    story_clip: Path, tools: FFmpegTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = probe(story_clip, tools)
    digest = file_sha256(story_clip)
    first = an.analyse(info, tools, sha256=digest, cache_dir=tmp_path)
    cached = an.cache_path(tmp_path, digest, tools)
    assert json.loads(cached.read_text())["source_sha256"] == digest

    def no_ffmpeg(*args: object, **kwargs: object) -> None:
        raise AssertionError("ffmpeg ran although the analysis was cached")

    monkeypatch.setattr(an, "run_ffmpeg", no_ffmpeg)
    seen: list[float] = []
    assert an.analyse(info, tools, sha256=digest, cache_dir=tmp_path, progress=seen.append) == first
    assert seen == [1.0]
    cached.write_text("{ corrupt")
    monkeypatch.undo()
    assert an.analyse(info, tools, sha256=digest, cache_dir=tmp_path).scene_cuts == first.scene_cuts


def test_video_only_input(make_clip: object, tools: FFmpegTools) -> None:
    clip = make_clip("v-only.mp4", video="testsrc2=s=160x90:r=25:d=3")  # type: ignore[operator]
    result = an.analyse(probe(clip, tools), tools, sha256="0" * 64)
    assert not result.has_audio and result.silences == [] and set(result.loudness) == {an.FLOOR_LUFS}


def test_stderr_fallback_and_helpers(tmp_path: Path) -> None:
    info = type("I", (), {"duration": 10.0, "has_audio": True, "has_video": False})()
    stderr = (
        "[blackdetect @ 0x1] black_start:1 black_end:2.5 black_duration:1.5\n"
        "[silencedetect @ 0x2] silence_start: 4.0\n[silencedetect @ 0x2] silence_end: 5.5 | silence_duration: 1.5\n"
        "[silencedetect @ 0x2] silence_start: 9.0\n"
        "  Integrated loudness:\n    I:         -70.0 LUFS\n  Integrated loudness:\n    I:         -19.5 LUFS\n"
    )
    result = an.parse_outputs(tmp_path, stderr, info)  # type: ignore[arg-type]
    assert result.blacks == [(1.0, 2.5)] and result.silences == [(4.0, 5.5), (9.0, 10.0)]
    assert result.integrated_lufs == -19.5
    assert an._rotation_filters(180) == ["hflip", "vflip"] and an._rotation_filters(270) == ["transpose=clock"]
    assert an._float("nan", 1.0) == 1.0 and an._float("x", 2.0) == 2.0
    meta = tmp_path / "video.txt"
    meta.write_text("frame:0 pts:0 pts_time:nan\nlavfi.scd.score=50\nframe:1 pts:1 pts_time:0.5\nlavfi.scd.score=50\n")
    assert an._read_metadata(meta) == [(0.5, {"lavfi.scd.score": "50"})]
    round_trip = an.Analysis.from_json(json.loads(json.dumps(result.to_json())))
    assert round_trip == result
