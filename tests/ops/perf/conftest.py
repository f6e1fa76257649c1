"""Fixtures of the perf guard tests: real ffmpeg, a tiny clip, a temporary git repository."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from montage.ops.perf.runner import Runner
from montage.ops.perf.workload import WORKLOAD_FILE, Clip, count_frames, run_checked, sha256_file

TINY_WORKLOAD = {
    "schema": 1,
    "kind": "ffmpeg",
    "threads": 1,
    "segments": [[0.2, 1.0], [1.2, 1.8]],
    "width": 160,
    "height": 96,
    "preset": "ultrafast",
    "crf": 30,
    "audio_bitrate": "64k",
    "expected_frames": 35,
    "frame_tolerance": 0,
}


@pytest.fixture(scope="session")
def ffmpeg_tools(require_tool: Callable[[str, str], str]) -> tuple[str, str]:
    return require_tool("ffmpeg", "ffmpeg"), require_tool("ffprobe", "ffmpeg")


@pytest.fixture(scope="session")
def tiny_clip(ffmpeg_tools: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """2 s of 320x180 at 25 fps with audio: renders in well under a second."""
    ffmpeg, ffprobe = ffmpeg_tools
    path = tmp_path_factory.mktemp("clip") / "tiny.mp4"
    argv = [
        ffmpeg,
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25:duration=2",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
        str(path),
    ]
    run_checked(argv, timeout=60, what="tiny clip")
    return Clip(path=path, sha256=sha256_file(path), frames=count_frames(ffprobe, path), argv=argv)


@pytest.fixture
def tiny_runner(ffmpeg_tools: tuple[str, str], tiny_clip: Clip, tmp_path: Path) -> Runner:
    work = tmp_path / "work"
    work.mkdir()
    return Runner(ffmpeg=ffmpeg_tools[0], ffprobe=ffmpeg_tools[1], clip=tiny_clip, workdir=work, timeout=60)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def write_workload(repo: Path, **changes: object) -> None:
    path = repo / WORKLOAD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(TINY_WORKLOAD | changes, indent=2) + "\n", encoding="utf-8")


@pytest.fixture
def tiny_repo(tmp_path: Path, require_tool: Callable[[str, str], str]) -> Path:
    """A git repository whose committed tree holds the tiny workload."""
    require_tool("git", "git")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "perf@example.invalid")
    git(repo, "config", "user.name", "perf test")
    write_workload(repo)
    (repo / ".gitignore").write_text("perf_baseline.json\n", encoding="utf-8")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "tiny workload")
    return repo
