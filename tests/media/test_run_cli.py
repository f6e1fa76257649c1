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


def test_captions_without_a_font_are_refused_before_rendering(
    story_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """fontconfig pointed at an empty configuration: exit 7 naming the package, no montage written."""
    plan_path = tmp_path / "cap.json"
    assert _run(capsys, str(story_clip), "-o", str(plan_path), "--plan-only", "--duration", "3")[0] == 0
    raw = json.loads(plan_path.read_text())
    raw["effects"]["captions"] = [{"start": 0.5, "end": 2.5, "text": "a caption"}]
    plan_path.write_text(json.dumps(raw))
    conf = tmp_path / "fonts.conf"
    conf.write_text('<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig></fontconfig>\n')
    monkeypatch.setenv("FONTCONFIG_FILE", str(conf))
    out = tmp_path / "c.mp4"
    code, _, err = _run(capsys, "--from-plan", str(plan_path), "-o", str(out))
    assert code == 7, err
    assert "needs a font" in err and "apt-get install --no-install-recommends fonts-dejavu-core" in err
    assert not out.exists() and not leftover_temp_files(tmp_path)
    monkeypatch.delenv("FONTCONFIG_FILE")
    assert _run(capsys, "--from-plan", str(plan_path), "-o", str(out))[0] == 0  # with the fonts back: renders


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


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["--duration", "0"], 2, "--duration 0.0 is out of range"),
        (["--duration", "nan"], 2, "out of range"),
        (["--duration", "99999999"], 2, "out of range"),
        (["--loudness", "3"], 2, "--loudness 3.0 is out of range"),
        (["--crossfade", "9"], 2, "--crossfade 9.0 is out of range"),
    ],
)
def test_absurd_options(
    argv: list[str], code: int, needle: str, story_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got, _, err = _run(capsys, str(story_clip), "-o", str(tmp_path / "o.mp4"), *argv)
    assert got == code and needle in err and "Traceback" not in err
    assert not (tmp_path / "o.mp4").exists()


def test_bad_inputs_via_cli(
    make_clip: Callable[..., Path], tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mov"
    junk.write_bytes(b"\x00\x01garbage" * 1000)
    audio_only = make_clip("voice.m4a", audio="sine=f=200:d=3")
    for path, needle in [(empty, "is empty (0 bytes)"), (junk, "not readable media"), (audio_only, "no video stream")]:
        out = tmp_path / "o.mp4"
        code, _, err = _run(capsys, str(path), "-o", str(out))
        assert code == 8, err
        assert needle in err and str(path) in err and "Traceback" not in err
        assert err.count("\n") == 1  # one paragraph
        assert not out.exists()
    assert leftover_temp_files(tmp_path, private_tmp) == []
    assert _run(capsys, "-o", str(tmp_path / "o.mp4"))[0] == 2
    assert _run(capsys, str(empty), "--from-plan", "p.json", "-o", str(tmp_path / "o.mp4"))[0] == 2
    assert _run(capsys, str(empty), "-o", str(tmp_path))[0] == 2


def test_render_failure_leaves_nothing(
    story_clip: Path, tools: FFmpegTools, tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from .test_ffmpeg import fake_ffmpeg_failing_midway

    fake = fake_ffmpeg_failing_midway(tmp_path, tools)
    monkeypatch.setenv("MONTAGE_MEDIA__FFMPEG", fake.ffmpeg)
    out_dir = tmp_path / "out"
    code, _, err = _run(capsys, str(story_clip), "-o", str(out_dir / "m.mp4"), "--duration", "4")
    assert code == 8 and "disk on fire" in err and "render of" in err
    assert not (out_dir / "m.mp4").exists()
    assert leftover_temp_files(out_dir, private_tmp) == []


def test_llm_without_key_falls_back_and_says_so(
    story_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MONTAGE_LLM__PROVIDER", "gemini")
    code, data, err = _run(capsys, str(story_clip), "-o", str(tmp_path / "p.json"), "--plan-only", "--duration", "5")
    assert code == 0, err
    assert data["selector"]["name"] == "scorer"  # type: ignore[index]
    assert "MONTAGE_LLM__GEMINI_API_KEY" in data["selector"]["fallback_reason"]  # type: ignore[index]


def test_resolve_flag(
    story_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from .test_resolve import STAND_IN

    module = tmp_path / "DaVinciResolveScript.py"
    module.write_text(STAND_IN)
    out = tmp_path / "r.mp4"
    code, _, err = _run(capsys, str(story_clip), "-o", str(out), "--duration", "3", "--resolve")
    assert code == 2 and "MONTAGE_MEDIA__RESOLVE_MODULE" in err
    monkeypatch.setenv("MONTAGE_MEDIA__RESOLVE_MODULE", str(module))
    code, data, err = _run(capsys, str(story_clip), "-o", str(out), "--duration", "3", "--resolve")
    assert code == 0 and data["resolve_timeline"] == "r"


def test_human_summary(story_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(story_clip), "-o", str(tmp_path / "h.mp4"), "--duration", "3", "--framing", "centre"]) == 0
    captured = capsys.readouterr()
    assert "montage:   " in captured.out and "loudness:  PASS" in captured.out and "timeline:" in captured.out
    assert "montage: render 100%" in captured.err  # plain progress lines when not a terminal


def test_works_without_system_ffmpeg(tmp_path: Path) -> None:
    """A fresh machine: no ffmpeg/ffprobe on PATH, nothing configured -> imageio-ffmpeg's binary + PyAV probing."""
    import os
    import subprocess
    import sys

    asset = Path(__file__).resolve().parents[1] / "assets" / "minimal.mp4"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONTAGE_")}
    env["PATH"] = str(tmp_path / "empty-bin")
    env["MONTAGE_MEDIA__CACHE_DIR"] = str(tmp_path / "cache")
    out = tmp_path / "fresh.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "montage", "run", "--json", str(asset), "-o", str(out), "--duration", "2"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["tools"]["ffmpeg_source"] == "imageio-ffmpeg" and summary["tools"]["ffprobe"] is None
    assert summary["loudness"]["verdict"] == "PASS" and out.is_file()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_honour_the_umask(umask: int, tmp_path: Path) -> None:
    """The montage, plan, EDL, XML and OTIO get 0666 minus the umask, like any file the user makes (not 0600)."""
    import os
    import stat
    import subprocess
    import sys

    asset = Path(__file__).resolve().parents[1] / "assets" / "minimal.mp4"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONTAGE_")}
    env["MONTAGE_MEDIA__CACHE_DIR"] = str(tmp_path / "cache")
    out = tmp_path / "m.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "montage", "run", str(asset), "-o", str(out), "--duration", "2"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, umask=umask,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    outputs = [out, tmp_path / "m.plan.json", tmp_path / "m.edl", tmp_path / "m.xml", tmp_path / "m.otio"]
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in outputs}
    assert modes == {p.name: oct(0o666 & ~umask) for p in outputs}


def _frame(tools: FFmpegTools, path: Path, t: float) -> bytes:
    import subprocess

    argv = [tools.ffmpeg, "-v", "error", "-ss", f"{t:.3f}", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
            "-pix_fmt", "gray", "-"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, timeout=60, check=True).stdout


def test_captions_are_burned_in(
    story_clip: Path, tools: FFmpegTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    words = [
        {"word": w, "start": 2.0 + i * 0.5, "end": 2.4 + i * 0.5}
        for i, w in enumerate("Quotes ' \" {and} \\N here.".split())
    ]
    transcript = tmp_path / "t.json"
    transcript.write_text(json.dumps(words))
    plan_path = tmp_path / "cap.json"
    args = [str(story_clip), "-o", str(plan_path), "--plan-only", "--duration", "4", "--transcript", str(transcript)]
    assert _run(capsys, *args, "--captions")[0] == 0
    raw = json.loads(plan_path.read_text())
    raw["segments"] = [{"source": 0, "start": 1.5, "end": 5.5, "role": "hook"}]
    raw["effects"]["captions"] = [{"start": 0.5, "end": 3.5, "text": "Quotes ' \" {and} \\N here."}]
    plan_path.write_text(json.dumps(raw))
    with_caps = tmp_path / "with.mp4"
    assert _run(capsys, "--from-plan", str(plan_path), "-o", str(with_caps))[0] == 0
    raw["effects"]["captions"] = []
    plan_path.write_text(json.dumps(raw))
    without = tmp_path / "without.mp4"
    assert _run(capsys, "--from-plan", str(plan_path), "-o", str(without))[0] == 0
    a, b = _frame(tools, with_caps, 2.0), _frame(tools, without, 2.0)
    w, h = 320, 180
    bottom = slice(w * (h * 2 // 3), w * h)
    changed = sum(1 for x, y in zip(a[bottom], b[bottom], strict=True) if abs(x - y) > 40)
    assert changed > 200, "no caption pixels in the lower third"
    top = slice(0, w * (h // 3))
    assert sum(1 for x, y in zip(a[top], b[top], strict=True) if abs(x - y) > 40) < 50


def test_two_inputs(
    story_clip: Path,
    make_clip: Callable[..., Path],
    tools: FFmpegTools,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    second = make_clip(
        "second.mp4", video="mandelbrot=s=320x180:r=25", audio="anoisesrc=c=pink:a=0.3:d=8", extra=["-t", "8"]
    )
    out = tmp_path / "two.mp4"
    code, data, err = _run(capsys, str(story_clip), str(second), "-o", str(out), "--duration", "12")
    assert code == 0, err
    plan = load_plan(out.with_name("two.plan.json"))
    assert len(plan.sources) == 2 and {s.source for s in plan.segments} == {0, 1}
    assert_done_when(tools, out, duration=12.0, aspect="16:9", lufs=-16.0)


def test_truncated_recording_uses_what_decodes(
    story_clip: Path, tools: FFmpegTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interrupted recording whose index survived (moov first): the intact part is used, and the summary says so."""
    import subprocess

    whole = tmp_path / "faststart.mp4"
    subprocess.run([tools.ffmpeg, "-v", "error", "-i", str(story_clip), "-c", "copy", "-movflags", "+faststart",
                    str(whole)], check=True, timeout=60)  # fmt: skip
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.55)])
    out = tmp_path / "cut-montage.mp4"
    code, data, err = _run(capsys, str(cut), "-o", str(out), "--duration", "20")
    assert code == 0, err
    notes = " ".join(data["notes"])  # type: ignore[arg-type]
    assert "decodes only to" in notes
    plan = load_plan(out.with_name("cut-montage.plan.json"))
    decoded = float(notes.split("decodes only to ")[1].split(" s")[0])
    assert 2.0 < decoded < 20.0 and all(s.end <= decoded + 0.06 for s in plan.segments)
    assert_done_when(tools, out, duration=decoded, aspect="16:9", lufs=-16.0)


def test_sigterm_stops_ffmpeg_and_cleans_up(story_clip: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    out_dir = tmp_path / "sig"
    out_dir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp_path), MONTAGE_MEDIA__PRESET="veryslow")
    proc = subprocess.Popen(
        [sys.executable, "-m", "montage", "run", str(story_clip), "-o", str(out_dir / "m.mp4"), "--duration", "20"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "render 0%" in line:
                break
        time.sleep(0.5)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("ffmpeg" in c.name() for c in children)
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 130, rest
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert "stopped by SIGTERM" in rest and "Traceback" not in rest
    psutil.wait_procs(children, timeout=10)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert sorted(p.name for p in out_dir.iterdir()) == ["m.plan.json"]
    assert leftover_temp_files(tmp_path) == []


def test_many_short_segments(
    story_clip: Path, tools: FFmpegTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """More segments than FRAME_THREAD_SEGMENTS: single-threaded decoders, same exact cuts and checks."""
    from montage.media.render import FRAME_THREAD_SEGMENTS

    plan_path = tmp_path / "many.json"
    assert _run(capsys, str(story_clip), "-o", str(plan_path), "--plan-only", "--duration", "5")[0] == 0
    raw = json.loads(plan_path.read_text())
    n = FRAME_THREAD_SEGMENTS + 4
    raw["segments"] = [{"source": 0, "start": 1.5 + 1.8 * i, "end": 2.0 + 1.8 * i} for i in range(n)]
    plan_path.write_text(json.dumps(raw))
    out = tmp_path / "many.mp4"
    code, data, err = _run(capsys, "--from-plan", str(plan_path), "-o", str(out))
    assert code == 0, err
    assert data["segments"] == n
    assert_done_when(tools, out, duration=0.5 * n, aspect="16:9", lufs=-16.0)


def test_crop_follows_motion(
    make_clip: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Motion only on the right of a 16:9 frame: the 9:16 window moves right; --framing centre keeps it centred."""
    clip = make_clip(
        "right-motion.mp4",
        video="color=c=gray:s=320x180:r=25:d=6[bg];testsrc2=s=60x60:r=25:d=6[fg];"
        "[bg][fg]overlay=x=240+15*sin(t*6):y=60+40*sin(t*4)",
        audio="sine=f=300:d=6",
    )  # fmt: skip
    plan_path = tmp_path / "crop.json"
    assert _run(capsys, str(clip), "-o", str(plan_path), "--plan-only", "--duration", "4", "--aspect", "9:16")[0] == 0
    plan = load_plan(plan_path)
    assert plan.effects.framing == "motion"
    assert all(s.crop_x > 0.7 for s in plan.segments), [s.crop_x for s in plan.segments]
    assert _run(capsys, str(clip), "-o", str(plan_path), "--plan-only", "--duration", "4", "--aspect", "9:16",
                "--framing", "centre")[0] == 0  # fmt: skip
    assert load_plan(plan_path).effects.framing == "centre"


def test_long_crossfade_is_fitted(
    story_clip: Path, tools: FFmpegTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "xf.mp4"
    code, data, err = _run(capsys, str(story_clip), "-o", str(out), "--duration", "9", "--crossfade", "2")
    assert code == 0, err
    plan = load_plan(out.with_name("xf.plan.json"))
    assert 0 < plan.effects.crossfade <= min(s.duration for s in plan.segments) / 2
    assert_done_when(tools, out, duration=9.0, aspect="16:9", lufs=-16.0)


def test_relative_paths_everywhere(
    story_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Plans made from relative paths keep them; the OTIO export must still write absolute file URIs.
    (tmp_path / "in.mp4").write_bytes(story_clip.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert _run(capsys, "in.mp4", "-o", "p.json", "--plan-only", "--duration", "4")[0] == 0
    raw = json.loads((tmp_path / "p.json").read_text())
    raw["sources"][0]["path"] = "in.mp4"  # as a person (or the perf workload) writes a plan by hand
    (tmp_path / "p.json").write_text(json.dumps(raw))
    code, _, err = _run(capsys, "--from-plan", "p.json", "-o", "out.mp4")
    assert code == 0, err
    otio_text = (tmp_path / "out.otio").read_text()
    assert (tmp_path / "in.mp4").as_uri() in otio_text
