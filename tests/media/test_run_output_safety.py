"""Adversarial ``montage run -o``: outputs that would destroy an input or cannot be written exit 2, touching nothing.

Every case runs the real CLI on a real clip; the refused path and the input are compared byte for
byte (or by file type) afterwards. FIFOs and symlinks live in tmp_path: never a real device.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from montage.cli import main

pytestmark = pytest.mark.usefixtures("media_env")


@pytest.fixture
def clip(make_clip: Callable[..., Path], tmp_path: Path) -> Path:
    src = make_clip("safety.mp4", video="testsrc2=s=160x90:r=25:d=3")
    copy = tmp_path / "in.mp4"
    copy.write_bytes(src.read_bytes())
    return copy


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(["run", "--json", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "-o " in err and "Traceback" not in err and "internal error" not in err
    return err


def _no_sidecars(directory: Path, stem: str) -> None:
    written = sorted(p.name for p in directory.iterdir() if p.name.startswith(stem) and p.suffix != ".mp4")
    assert written == [], written


@pytest.mark.parametrize("spelling", ["plain", "dot", "absolute", "symlink", "hardlink"])
def test_output_that_is_the_input_is_refused(
    clip: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    before = _digest(clip)
    monkeypatch.chdir(clip.parent)
    if spelling == "symlink":
        (clip.parent / "link.mp4").symlink_to(clip)
        out = "link.mp4"
    elif spelling == "hardlink":
        os.link(clip, clip.parent / "hard.mp4")
        out = "hard.mp4"
    else:
        out = {"plain": "in.mp4", "dot": "./in.mp4", "absolute": str(clip)}[spelling]
    err = _refused(capsys, "in.mp4", "-o", out, "--duration", "2")
    assert "same file as the input" in err and str(Path(out)) in err
    assert _digest(clip) == before
    if spelling == "symlink":
        assert (clip.parent / "link.mp4").is_symlink()
    _no_sidecars(clip.parent, Path(out).stem)


def test_plan_only_onto_the_input_and_from_plan_onto_its_plan_are_refused(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _digest(clip)
    transcript = tmp_path / "words.json"
    transcript.write_text('{"words": []}')
    # --plan-only -o X.json writes the plan at X.json: here, over the transcript it reads.
    assert "same file" in _refused(
        capsys, str(clip), "--transcript", str(transcript), "-o", str(transcript), "--plan-only"
    )
    assert transcript.read_text() == '{"words": []}'
    plan = tmp_path / "edit.json"
    assert main(["run", "--json", str(clip), "-o", str(plan), "--plan-only", "--duration", "2"]) == 0
    capsys.readouterr()
    plan_before = _digest(plan)
    # Rendering onto the plan that is being rendered, or onto its source, destroys it.
    assert "same file as the input" in _refused(capsys, "--from-plan", str(plan), "-o", str(plan))
    assert "same file as the input" in _refused(capsys, "--from-plan", str(plan), "-o", str(clip))
    assert _digest(plan) == plan_before and _digest(clip) == before


def test_sidecar_onto_the_input_is_refused(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    transcript = tmp_path / "talk.plan.json"
    transcript.write_text('{"words": []}')
    before = _digest(transcript)
    err = _refused(capsys, str(clip), "--transcript", str(transcript), "-o", str(tmp_path / "talk.mp4"))
    assert "sidecar" in err and "talk.plan.json" in err
    assert _digest(transcript) == before and not (tmp_path / "talk.mp4").exists()


def test_fifo_output_is_refused_and_stays_a_fifo(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    err = _refused(capsys, str(clip), "-o", str(fifo), "--duration", "2")
    assert "FIFO" in err and str(fifo) in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    _no_sidecars(tmp_path, "pipe")


def test_symlink_to_a_fifo_and_a_fifo_sidecar_are_refused(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "sink"
    os.mkfifo(fifo)
    (tmp_path / "dev-null-like.mp4").symlink_to(fifo)
    assert "FIFO" in _refused(capsys, str(clip), "-o", str(tmp_path / "dev-null-like.mp4"), "--duration", "2")
    os.mkfifo(tmp_path / "reel.edl")
    err = _refused(capsys, str(clip), "-o", str(tmp_path / "reel.mp4"), "--duration", "2")
    assert "reel.edl" in err and "FIFO" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISFIFO(os.lstat(tmp_path / "reel.edl").st_mode)
    assert not (tmp_path / "reel.mp4").exists() and not (tmp_path / "reel.plan.json").exists()


def test_directory_output_is_refused(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dir.mp4").mkdir()
    assert "directory" in _refused(capsys, str(clip), "-o", str(tmp_path / "dir.mp4"))
    assert (tmp_path / "dir.mp4").is_dir() and list((tmp_path / "dir.mp4").iterdir()) == []


def test_unwritable_places_are_refused(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("keep")
    err = _refused(capsys, str(clip), "-o", str(tmp_path / "afile" / "out.mp4"))
    assert "is a file, not a directory" in err
    err = _refused(capsys, str(clip), "-o", str(tmp_path / "afile" / "deeper" / "out.mp4"))
    assert "is a file, not a directory" in err
    assert (tmp_path / "afile").read_text() == "keep"
    long = tmp_path / ("x" * 256 + ".mp4")
    assert "too long" in _refused(capsys, str(clip), "-o", str(long))
    # The montage name fits, but its plan sidecar (stem + ".plan.json") does not.
    near = tmp_path / ("y" * 250 + ".mp4")
    assert "sidecar" in _refused(capsys, str(clip), "-o", str(near))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "in.mp4"]


def test_output_named_like_its_own_sidecar_is_refused(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # -o reel.edl: the EDL sidecar would be reel.edl too, overwriting the montage.
    assert "two of the files" in _refused(capsys, str(clip), "-o", str(tmp_path / "reel.edl"))
    assert not (tmp_path / "reel.edl").exists()
