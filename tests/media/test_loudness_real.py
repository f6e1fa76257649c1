"""Loudness on audio like real recordings (scripts/build_corpus.py's LOUDNESS_CORPUS, and real speech).

Every montage is measured by pyloudnorm on decoded samples (``independent_lufs``), never by Montage's
ebur128 parser.  The only accepted refusal is a true-peak conflict, and the test proves it with its
own measurement of the source's peak and loudness.  The video of every clip is synthetic.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from montage.cli import main
from montage.media.ffmpeg import FFmpegTools
from tests.conftest import install_line, missing_tool

from .conftest import decode_samples, independent_lufs, independent_true_peak, leftover_temp_files
from .test_corpus import load_script

pytestmark = pytest.mark.usefixtures("media_env")
TARGET = -16.0
CEILING = -1.5


@pytest.fixture(scope="session")
def build() -> object:
    return load_script("build_corpus")


@pytest.fixture(scope="session")
def loud_corpus(tmp_path_factory: pytest.TempPathFactory, tools: FFmpegTools, build: object) -> dict[str, Path]:
    paths = build.build_loudness_corpus(tmp_path_factory.mktemp("loud"), tools.ffmpeg)  # type: ignore[attr-defined]
    return {p.name: p for p in paths}


def _montage(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object] | None, str]:
    code = main(["run", "--json", *args])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


def _assert_on_target(tools: FFmpegTools, out: Path, summary: dict[str, object] | None) -> float:
    measured = independent_lufs(tools, out)
    assert abs(measured - TARGET) <= 1.0, f"{out.name}: {measured:.2f} LUFS by pyloudnorm, target {TARGET}"
    assert summary is not None and summary["loudness"]["verdict"] == "PASS"  # type: ignore[index]
    return measured


# (clip, --duration): 2.5 s and 3 s are the lengths where ffmpeg's loudnorm took its short-input
# path (less than 3 s: a gain computed by subtracting linear amplitudes) or sat on its boundary.
HEADLINE = [("quiet51_steps_aac.mp4", "3"), ("quiet51_steps_aac.mp4", "2.5")]
CASES = [
    ("quiet_mono_pcm.mov", "3"),
    ("quiet_mono_pcm.mov", "2.5"),
    ("quiet71_opus.mkv", "3"),
    ("hot_stereo_ac3.mkv", "3"),
    ("hot51_ac3.mp4", "2.5"),
    ("hot_mono_opus.mkv", "3"),
    ("late_audio_aac.mp4", "2.5"),
    ("early_end_pcm.mov", "3"),
]


@pytest.mark.parametrize(("name", "duration"), HEADLINE)
def test_quiet_surround_clip_lands_on_target(
    name: str, duration: str, loud_corpus: dict[str, Path], tools: FFmpegTools, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The reported failure: 5.3 s of quiet (-34 LUFS) 5.1 AAC with 24 dB level steps (was -35.4 LUFS at 2.5 s)."""
    src = loud_corpus[name]
    assert abs(independent_lufs(tools, src) - -34.0) <= 1.5  # the clip really is that quiet
    out = tmp_path / "m.mp4"
    code, summary, err = _montage(capsys, str(src), "-o", str(out), "--duration", duration)
    assert code == 0, err
    _assert_on_target(tools, out, summary)
    assert independent_true_peak(tools, out) <= CEILING + 0.5  # its transients were limited, not clipped


@pytest.mark.slow
@pytest.mark.parametrize(("name", "duration"), CASES)
def test_recording_like_clip_lands_on_target(
    name: str, duration: str, loud_corpus: dict[str, Path], tools: FFmpegTools, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], build: object,
) -> None:  # fmt: skip
    src = loud_corpus[name]
    nominal = next(c.lufs for c in build.LOUDNESS_CORPUS if c.name == name)  # type: ignore[attr-defined]
    if "71" not in name:  # pyloudnorm measures up to 5 channels; the 7.1 clip is scaled by the same code
        assert abs(independent_lufs(tools, src) - nominal) <= 1.5, name
    out = tmp_path / "m.mp4"
    code, summary, err = _montage(capsys, str(src), "-o", str(out), "--duration", duration)
    assert code == 0, err
    _assert_on_target(tools, out, summary)
    assert independent_true_peak(tools, out) <= CEILING + 0.5


def test_real_speech_lands_on_target(
    build: object, tools: FFmpegTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real recorded speech (Debian alsa-utils' spoken channel names), quiet 5.1 AAC with level steps."""
    sounds = build.ALSA_SOUNDS  # type: ignore[attr-defined]
    if not (sounds / "Front_Center.wav").is_file():
        missing_tool(f"{sounds}/*.wav (real speech) are not installed; install them with: {install_line('alsa-utils')}")
    src = build.build_real_speech(tmp_path / "speech51.mp4", tools.ffmpeg)  # type: ignore[attr-defined]
    assert abs(independent_lufs(tools, src) - -34.0) <= 1.5
    for duration in ("3", "2.5"):
        out = tmp_path / f"m{duration}.mp4"
        code, summary, err = _montage(capsys, str(src), "-o", str(out), "--duration", duration)
        assert code == 0, err
        _assert_on_target(tools, out, summary)


def test_true_peak_conflict_is_refused_before_rendering(
    make_clip: object, tools: FFmpegTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sparse clicks: reaching -8 LUFS would need far more than the ceiling allows; refused, nothing written."""
    src = make_clip(  # type: ignore[operator]
        "clicks.mp4", video="testsrc2=s=160x90:r=25:d=6",
        audio="aevalsrc=exprs='if(lt(mod(t\\,0.5)\\,0.003)\\,0.95\\,0.003*random(0))':s=48000:d=6",
    )  # fmt: skip
    # The test's own proof that this is a true-peak conflict: one constant gain to -8 LUFS would put the
    # peaks over the ceiling (and limiting them cannot make up the loudness: the clicks are the loudness).
    lufs, peak = independent_lufs(tools, src), independent_true_peak(tools, src)
    assert peak + (-8.0 - lufs) > CEILING, (lufs, peak)
    out = tmp_path / "clicks-montage.mp4"
    code, _, err = _montage(capsys, str(src), "-o", str(out), "--duration", "4", "--loudness", "-8")
    assert code == 2, err
    assert "cannot reach -8 LUFS under the -1.5 dBTP true-peak ceiling" in err and "--loudness" in err
    assert not out.exists() and not leftover_temp_files(tmp_path)  # refused before the render started
    assert "Traceback" not in err


def test_late_audio_keeps_sync(tools: FFmpegTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Audio that starts 1.5 s into the file: a beep at 2.0 s in the source plays 1.0 s into a cut at 1.0 s."""
    beep = tmp_path / "beep.wav"
    src = tmp_path / "late.mp4"
    ff = [tools.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    expr = "0.5*sin(2*PI*1000*t)*between(t\\,0.5\\,0.7)"
    subprocess.run([*ff, "-f", "lavfi", "-i", f"aevalsrc=exprs='{expr}':s=48000:d=3", str(beep)], check=True)
    subprocess.run(
        [*ff, "-f", "lavfi", "-i", "testsrc2=s=320x180:r=30:d=5", "-itsoffset", "1.5", "-i", str(beep),
         "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(src)],
        check=True,
    )  # fmt: skip
    plan_path = tmp_path / "p.json"
    assert _montage(capsys, str(src), "-o", str(plan_path), "--plan-only", "--duration", "2")[0] == 0
    plan = json.loads(plan_path.read_text())
    plan["segments"] = [dict(plan["segments"][0], start=1.0, end=3.0)]
    plan_path.write_text(json.dumps(plan))
    out = tmp_path / "out.mp4"
    code, _, err = _montage(capsys, "--from-plan", str(plan_path), "-o", str(out))
    assert code == 0, err
    samples, rate = decode_samples(tools, out)
    loud = (abs(samples).max(axis=1) > 0.05).nonzero()[0]
    assert len(loud), "the beep is missing"
    onset = loud[0] / rate
    assert abs(onset - 1.0) <= 0.05, f"beep at {onset:.3f} s of the montage, expected 1.0 s"
