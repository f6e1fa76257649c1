"""The varied corpus (scripts/build_corpus.py): every clip renders a montage passing the done-when checks."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from montage.cli import main
from montage.media.ffmpeg import FFmpegTools

from .conftest import assert_done_when

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("media_env")]
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> ModuleType:
    """Load a committed script by path (scripts/ is not a package; no sys.path edits)."""
    spec = importlib.util.spec_from_file_location(f"montage_script_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, tools: FFmpegTools) -> dict[str, Path]:
    build = load_script("build_corpus")
    paths = build.build_corpus(tmp_path_factory.mktemp("corpus"), tools.ffmpeg)
    return {p.name: p for p in paths}


CASES = [
    ("hevc.mkv", "16:9", 3.0, 3.0),
    ("vp9.webm", "9:16", 3.0, 3.0),
    ("mpeg2_interlaced.ts", "16:9", 3.0, 3.0),
    ("prores.mov", "9:16", 2.5, 2.5),
    ("phone_vfr_rotated.mp4", "16:9", 3.0, 3.0),
    ("phone_vfr_rotated.mp4", "9:16", 3.0, 3.0),
    ("surround51.mp4", "16:9", 3.0, 3.0),
    ("no_audio.mp4", "16:9", 10.0, 6.0),  # shorter than the target: all of it
    ("anamorphic.mp4", "9:16", 3.0, 3.0),
]


@pytest.mark.parametrize(("name", "aspect", "target", "expected"), CASES)
def test_corpus_clip_renders(
    name: str, aspect: str, target: float, expected: float, corpus: dict[str, Path], tools: FFmpegTools,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / f"{Path(name).stem}-{aspect.replace(':', 'x')}.mp4"
    code = main(["run", "--json", str(corpus[name]), "-o", str(out), "--duration", str(target), "--aspect", aspect])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    has_audio = name != "no_audio.mp4"
    assert_done_when(tools, out, duration=expected, aspect=aspect, lufs=-16.0 if has_audio else None)
    if has_audio:
        assert summary["loudness"]["verdict"] == "PASS"
    if name == "mpeg2_interlaced.ts":
        from montage.media.video_processor import probe

        assert probe(corpus[name], tools).video[0].interlaced


def test_reference_and_demo_builders(tools: FFmpegTools, tmp_path: Path) -> None:
    from montage.media.video_processor import probe

    build = load_script("build_corpus")
    demo = probe(build.build_demo(tmp_path / "demo.mp4", tools.ffmpeg, duration=8.0), tools)
    assert (demo.video[0].width, demo.video[0].height) == (640, 360) and abs(demo.duration - 8.0) < 0.1
