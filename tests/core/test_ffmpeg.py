"""montage.core.ffmpeg: one locator, in a documented order; real binaries."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from montage.core import ffmpeg
from montage.errors import ToolMissing


def _fake(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_order_configured_env_path_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = shutil.which("ffmpeg")
    if system is None:
        pytest.skip("needs a system ffmpeg on PATH")
    fake = _fake(tmp_path / "ffmpeg", 'echo "ffmpeg version 9.9-fake"\n')
    assert ffmpeg.locate(str(fake), environ={}) == ffmpeg.Located(str(fake), "settings", None)
    assert ffmpeg.locate(environ={"MONTAGE_FFMPEG": str(fake)}).ffmpeg == str(fake)  # legacy name
    assert ffmpeg.locate(environ={"MONTAGE_MEDIA__FFMPEG": str(fake), "MONTAGE_FFMPEG": "x"}).ffmpeg == str(fake)
    on_path = ffmpeg.locate(environ={})
    assert (on_path.ffmpeg, on_path.source) == (system, "PATH")
    assert on_path.ffprobe == str(Path(system).with_name("ffprobe"))  # same build
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bundled = ffmpeg.locate(environ={})
    assert bundled.source == "imageio-ffmpeg" and "imageio_ffmpeg" in bundled.ffmpeg and bundled.ffprobe is None
    assert ffmpeg.version(bundled.ffmpeg)  # it really runs


def test_version_of_the_real_binary_and_of_an_impostor(tmp_path: Path) -> None:
    real = ffmpeg.locate(environ={}).ffmpeg
    assert ffmpeg.version_line(real).startswith(f"ffmpeg version {ffmpeg.version(real)}")
    impostor = _fake(tmp_path / "ffmpeg", "echo hello\n")
    with pytest.raises(ToolMissing, match="does not behave like ffmpeg"):
        ffmpeg.version(str(impostor))


def test_missing_configured_binary_and_probe(tmp_path: Path) -> None:
    with pytest.raises(ToolMissing, match="does not exist or is not executable"):
        ffmpeg.locate(str(tmp_path / "nope"), environ={})
    with pytest.raises(ToolMissing, match="ffprobe"):
        ffmpeg.locate(environ={"MONTAGE_MEDIA__FFPROBE": str(tmp_path / "nope")})


def test_render_perf_guard_and_bundle_name_the_same_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    from montage.media.ffmpeg import find_tools
    from montage.ops.fingerprint import tool_versions
    from montage.ops.perf.fingerprint import ffmpeg_version
    from montage.ops.perf.workload import find_ffmpeg

    monkeypatch.delenv("MONTAGE_MEDIA__FFMPEG", raising=False)
    monkeypatch.delenv("MONTAGE_FFMPEG", raising=False)
    render = find_tools()
    bundle = tool_versions()
    perf = find_ffmpeg()
    assert os.path.realpath(render.ffmpeg) == os.path.realpath(bundle["ffmpeg_path"]) == perf
    assert render.ffmpeg_version == bundle["ffmpeg"]
    assert ffmpeg_version(perf).startswith(f"ffmpeg version {render.ffmpeg_version}")
