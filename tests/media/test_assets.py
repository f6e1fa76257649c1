"""The committed tiny asset: small, probes the same with ffprobe and PyAV, plans in well under a second."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from montage.cli import main
from montage.media.ffmpeg import FFmpegTools
from montage.media.video_processor import probe

ASSET = Path(__file__).resolve().parents[1] / "assets" / "minimal.mp4"


def test_asset_is_small_and_probes_alike(tools: FFmpegTools) -> None:
    assert ASSET.stat().st_size < 300 * 1024
    by_ffprobe = probe(ASSET, tools)
    by_pyav = probe(ASSET, replace(tools, ffprobe=None))
    assert by_ffprobe.video == by_pyav.video and by_ffprobe.audio == by_pyav.audio
    assert abs(by_ffprobe.duration - by_pyav.duration) < 0.05 and abs(by_ffprobe.duration - 4.0) < 0.05


@pytest.mark.usefixtures("media_env")
def test_plan_only_on_asset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    assert main(["run", "--json", str(ASSET), "-o", str(plan), "--plan-only", "--duration", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    data = json.loads(plan.read_text())
    assert summary["plan"] == str(plan) and data["version"] == 1 and data["render"]["width"] == 160
    assert abs(sum(s["end"] - s["start"] for s in data["segments"]) - 2.0) < 0.04
