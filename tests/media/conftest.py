"""Media fixtures: small clips generated once per test session with the real ffmpeg.

Short, low resolution, ``ultrafast``: the whole media suite must stay within a few minutes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from montage.media.ffmpeg import FFmpegTools, find_tools

# "Speech": a pitch-wobbling tone in 4 Hz syllable bursts; 1.2 s of silence opens every 6 s block,
# and the second half is 10 dB louder than the first.
SPEECH = (
    "aevalsrc=exprs='0.5*sin(2*PI*(190+50*sin(2*PI*0.7*t))*t)*(0.55+0.45*sin(2*PI*4*t))"
    "*gt(mod(t\\,6)\\,1.2)*if(gt(t\\,12)\\,1\\,0.32)':s=48000:d={d}"
)
STORY_SCENES = ["testsrc2", "smptebars", "rgbtestsrc", "testsrc"]


def run_ffmpeg_cmd(tools: FFmpegTools, args: list[str]) -> None:
    argv = [tools.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    subprocess.run(argv, check=True, timeout=300, capture_output=True)


@pytest.fixture(scope="session")
def tools(require_tool: Callable[[str, str], str]) -> FFmpegTools:
    """The system ffmpeg and ffprobe (tests call both directly): skipped with the install line without them,
    a failure under CI=true.  The bundled-binary path has its own test (test_works_without_system_ffmpeg)."""
    require_tool("ffmpeg", "ffmpeg")
    require_tool("ffprobe", "ffmpeg")
    return find_tools()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def make_story_clip(tools: FFmpegTools, path: Path, size: str = "320x180", scene_s: int = 6) -> Path:
    """Four scenes (a cut every ``scene_s`` s), a 1 s black gap at 12 s, speech-like audio with pauses."""
    inputs: list[str] = []
    for name in STORY_SCENES:
        inputs += ["-f", "lavfi", "-i", f"{name}=s={size}:r=30:d={scene_s}"]
    total = scene_s * len(STORY_SCENES)
    inputs += ["-f", "lavfi", "-i", SPEECH.format(d=total)]
    graph = (
        "".join(f"[{i}:v]" for i in range(len(STORY_SCENES)))
        + f"concat=n={len(STORY_SCENES)}:v=1:a=0,drawbox=c=black:t=fill:enable='between(t,12,13)'[v]"
    )
    run_ffmpeg_cmd(
        tools,
        [*inputs, "-filter_complex", graph, "-map", "[v]", "-map", f"{len(STORY_SCENES)}:a"]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac", "-b:a", "96k", str(path)],
    )
    return path


@pytest.fixture(scope="session")
def story_clip(tools: FFmpegTools, media_dir: Path) -> Path:
    """24 s, 320x180, 30 fps, cuts at 6/12/18 s, black 12-13 s, silences 0-1.2, 6-7.2, 12-13.2, 18-19.2 s."""
    return make_story_clip(tools, media_dir / "story.mp4")


@pytest.fixture(scope="session")
def make_clip(tools: FFmpegTools, media_dir: Path) -> Callable[..., Path]:
    """Build a small clip: ``make_clip(name, video="testsrc2=...", audio="sine=...", extra=[...])``."""

    def _make(name: str, video: str | None = None, audio: str | None = None, extra: list[str] | None = None) -> Path:
        path = media_dir / name
        if path.exists():
            return path
        args: list[str] = []
        if video:
            args += ["-f", "lavfi", "-i", video]
        if audio:
            args += ["-f", "lavfi", "-i", audio]
        if video:
            args += ["-c:v", "libx264", "-preset", "ultrafast"]
        if audio:
            args += ["-c:a", "aac", "-b:a", "96k"]
        run_ffmpeg_cmd(tools, [*args, *(extra or []), "-shortest", str(path)])
        return path

    return _make


def ffprobe_json(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data: dict[str, object] = json.loads(out.stdout)
    return data


def decode_samples(tools: FFmpegTools, path: Path) -> tuple[Any, int]:
    """The first audio stream of ``path`` decoded by ffmpeg to 48 kHz float samples: (frames x channels, rate)."""
    import numpy as np

    info = ffprobe_json(path)
    streams = [s for s in info["streams"] if s["codec_type"] == "audio"]  # type: ignore[union-attr,index]
    channels = int(streams[0]["channels"])
    raw = subprocess.run(
        [tools.ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-ar", "48000",
         "-f", "f32le", "-acodec", "pcm_f32le", "-"],
        capture_output=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, dtype="<f4").reshape(-1, channels).astype(np.float64), 48000


def independent_lufs(tools: FFmpegTools, path: Path) -> float:
    """Integrated loudness of ``path``'s audio by pyloudnorm (ITU-R BS.1770-4), never Montage's own meter.

    5.1 is measured without its LFE channel (BS.1770 leaves it out); pyloudnorm weighs the surrounds.
    """
    import pyloudnorm

    samples, rate = decode_samples(tools, path)
    if samples.shape[1] == 6:
        samples = samples[:, [0, 1, 2, 4, 5]]
    if samples.shape[1] > 5:
        raise AssertionError(f"{path}: pyloudnorm measures up to 5 channels, not {samples.shape[1]}")
    return float(pyloudnorm.Meter(rate).integrated_loudness(samples))


def independent_true_peak(tools: FFmpegTools, path: Path) -> float:
    """True peak (dBTP) of ``path``'s audio: the largest sample after 4x oversampling (BS.1770-4 annex 2)."""
    import numpy as np
    from scipy.signal import resample_poly

    samples, _ = decode_samples(tools, path)
    peak = float(np.max(np.abs(resample_poly(samples, 4, 1, axis=0))))
    return 20 * math.log10(max(peak, 1e-12))


def assert_done_when(
    tools: FFmpegTools,
    path: Path,
    *,
    duration: float,
    aspect: str,
    lufs: float | None,
) -> None:
    """The issue's done-when checks on one output, each measured independently of the renderer."""
    # 1. decodes with -xerror
    decode = subprocess.run(
        [tools.ffmpeg, "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert decode.returncode == 0, decode.stderr
    data = ffprobe_json(path)
    streams = data["streams"]
    assert isinstance(streams, list)
    video = [s for s in streams if s["codec_type"] == "video"]
    audio = [s for s in streams if s["codec_type"] == "audio"]
    assert len(video) == 1 and video[0]["codec_name"] == "h264"
    # 2. the requested aspect
    w, h = int(video[0]["width"]), int(video[0]["height"])
    expected = 16 / 9 if aspect == "16:9" else 9 / 16
    assert abs(w / h - expected) < 0.02, (w, h)
    # 3. duration within 1 s of the target
    v_dur = float(video[0]["duration"])
    assert abs(v_dur - duration) <= 1.0, (v_dur, duration)
    if lufs is None:
        assert not audio
        return
    assert len(audio) == 1 and audio[0]["codec_name"] == "aac"
    # 4. A/V drift at most 40 ms
    a_dur = float(audio[0]["duration"])
    assert abs(a_dur - v_dur) <= 0.040, (a_dur, v_dur)
    # 5. loudness within 1 LU, by pyloudnorm on the decoded samples (not Montage's ebur128 parser)
    measured = independent_lufs(tools, path)
    assert abs(measured - lufs) <= 1.0, measured


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temp dir for Montage's own temp files, so tests can check none are left behind."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.fixture
def media_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No MONTAGE_* settings from the shell; analysis cache in the test's own directory."""
    for name in list(os.environ):
        if name.startswith("MONTAGE_") or name in {"USE_SETTINGS_V2", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MONTAGE_MEDIA__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MONTAGE_MEDIA__PRESET", "ultrafast")
    monkeypatch.setenv("MONTAGE_OPS__FLAGS_FILE", str(tmp_path / "flags.json"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def leftover_temp_files(*directories: Path) -> list[str]:
    """Partial outputs or temp dirs Montage left in ``directories``."""
    found = []
    for directory in directories:
        for p in directory.iterdir():
            if "partial" in p.name or p.name.endswith(".tmp") or p.name.startswith("montage-"):
                found.append(str(p))
    return found
