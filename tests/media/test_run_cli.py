"""``montage run`` / ``montage probe`` end to end on generated media, with the issue's done-when checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from montage.cli import main
from montage.media.ffmpeg import FFmpegTools
from montage.media.plan import load_plan

from .conftest import assert_done_when, leftover_temp_files

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("media_env")]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    code = main(["run", "--json", *argv])
    captured = capsys.readouterr()
    data = json.loads(captured.out) if code == 0 and captured.out.strip() else {}
    return code, data, captured.err


def test_run_16x9_done_when(
    story_clip: Path, tools: FFmpegTools, tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "montage.mp4"
    code, data, err = _run(capsys, str(story_clip), "-o", str(out), "--duration", "10")
    assert code == 0, err
    assert_done_when(tools, out, duration=10.0, aspect="16:9", lufs=-16.0)
    assert data["loudness"]["verdict"] == "PASS"  # type: ignore[index]
    assert data["selector"]["name"] == "scorer"  # type: ignore[index]
    plan = load_plan(out.with_name("montage.plan.json"))
    roles = [s.role for s in plan.segments]
    assert roles[0] == "hook" and roles[-1] == "resolution"
    spans = sorted((s.start, s.end) for s in plan.segments)
    assert all(a[1] <= b[0] + 1e-6 for a, b in zip(spans, spans[1:], strict=False)), "segments overlap"
    assert (tmp_path / "out" / "montage.edl").is_file() and (tmp_path / "out" / "montage.otio").is_file()
    assert leftover_temp_files(out.parent, private_tmp) == []


def test_plan_only_then_from_plan_renders_exactly_it(
    story_clip: Path, tools: FFmpegTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_path = tmp_path / "edit.json"
    code, data, err = _run(
        capsys, str(story_clip), "-o", str(plan_path), "--plan-only", "--duration", "6", "--aspect", "9:16"
    )
    assert code == 0, err
    assert data["output"] is None and not (tmp_path / "edit.mp4").exists()
    plan = load_plan(plan_path)
    # Edit the plan by hand: keep two segments; --from-plan must render exactly those.
    raw = json.loads(plan_path.read_text())
    raw["segments"] = [
        {"source": 0, "start": 1.5, "end": 4.0, "role": "hook", "crop_x": 0.2},
        {"source": 0, "start": 19.5, "end": 22.0, "role": "resolution"},
    ]
    plan_path.write_text(json.dumps(raw))
    out = tmp_path / "from plan.mp4"
    code, data, err = _run(capsys, "--from-plan", str(plan_path), "-o", str(out))
    assert code == 0, err
    assert data["segments"] == 2 and data["aspect"] == "9:16"
    assert_done_when(tools, out, duration=5.0, aspect="9:16", lufs=plan.render.loudness.integrated)


def test_changed_source_is_refused(
    story_clip: Path, make_clip: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "copy.mp4"
    src.write_bytes(story_clip.read_bytes())
    plan_path = tmp_path / "p.json"
    assert _run(capsys, str(src), "-o", str(plan_path), "--plan-only", "--duration", "5")[0] == 0
    src.write_bytes(make_clip("other.mp4", video="testsrc2=s=160x90:r=25:d=3").read_bytes())
    code, _, err = _run(capsys, "--from-plan", str(plan_path), "-o", str(tmp_path / "x.mp4"))
    assert code == 2 and "has changed since the plan was made" in err and "Traceback" not in err


def test_vertical_crossfade_captions_transcript(
    story_clip: Path, tools: FFmpegTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    words = [
        {"word": w, "start": 7.5 + i * 0.4, "end": 7.8 + i * 0.4, "confidence": 0.9}
        for i, w in enumerate("this is the moment it all changed.".split())
    ]
    transcript = tmp_path / "t.json"
    transcript.write_text(json.dumps({"words": words}))
    out = tmp_path / "v.mp4"
    code, data, err = _run(
        capsys, str(story_clip), "-o", str(out), "--duration", "8", "--aspect", "9:16", "--crossfade", "0.3",
        "--transcript", str(transcript), "--captions", "--loudness", "-20",
    )  # fmt: skip
    assert code == 0, err
    assert_done_when(tools, out, duration=8.0, aspect="9:16", lufs=-20.0)
    plan = load_plan(out.with_name("v.plan.json"))
    assert plan.effects.crossfade == 0.3
    assert abs(plan.duration - 8.0) < 0.05


def test_video_only_input(
    make_clip: Callable[..., Path], tools: FFmpegTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = make_clip("noaudio.mp4", video="testsrc2=s=320x240:r=25:d=8")
    out = tmp_path / "na.mp4"
    code, data, err = _run(capsys, str(clip), "-o", str(out), "--duration", "4")
    assert code == 0, err
    assert data["loudness"] is None
    assert_done_when(tools, out, duration=4.0, aspect="16:9", lufs=None)


def test_input_shorter_than_target(
    make_clip: Callable[..., Path], tools: FFmpegTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = make_clip("short.mp4", video="testsrc2=s=320x240:r=30:d=3", audio="sine=f=300:d=3")
    out = tmp_path / "s.mp4"
    code, data, err = _run(capsys, str(clip), "-o", str(out), "--duration", "30")
    assert code == 0, err
    assert any("shorter than" in n for n in data["notes"])  # type: ignore[union-attr]
    assert_done_when(tools, out, duration=3.0, aspect="16:9", lufs=-16.0)


@pytest.mark.parametrize("name", ["with space.mp4", "quote'and\"dq.mp4", "ünïcødé 视频.mp4", "-leading.mp4"])
def test_awkward_file_names(
    name: str, make_clip: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = make_clip("plain.mp4", video="testsrc2=s=160x90:r=25:d=4", audio="sine=f=500:d=4")
    src = tmp_path / name
    src.write_bytes(clip.read_bytes())
    out = tmp_path / ("out " + name)
    # A leading '-' needs '--' (as with every Unix tool); the name itself is passed unchanged.
    code, data, err = _run(capsys, "-o", str(out), "--duration", "2", "--", name)
    assert code == 0, err
    assert out.is_file() and data["output"] == str(out)


def test_probe_command(story_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", str(story_clip), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["video"][0]["fps"] == "30/1" and data["audio"][0]["sample_rate"] == 48000
    assert main(["probe", str(story_clip)]) == 0
    assert "video #0: h264 320x180" in capsys.readouterr().out
