#!/usr/bin/env python3
"""Regenerate tests/assets/minimal.mp4: 4 s, 160x90, 30 fps H.264 + AAC, three hard cuts, speech-like audio.

Run in the project's virtual environment: ``python scripts/make_minimal_asset.py``.  The file must stay
under 300 KB (checked here and by tests/media/test_assets.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

# scripts/ is sys.path[0] when this file runs as a script.
from build_corpus import AAC, _run, find_ffmpeg, footage_args

ROOT = Path(__file__).resolve().parent.parent
ASSET = ROOT / "tests" / "assets" / "minimal.mp4"
MAX_BYTES = 300 * 1024


def make(path: Path = ASSET, ffmpeg: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    args = footage_args(4.0, "160x90", 30, [1.5, 1.0, 1.5], (2.5, 3.2))
    bitexact = ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
    codec = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "30", "-threads", "1", "-pix_fmt", "yuv420p"]
    _run(ffmpeg or find_ffmpeg(), [*args, *codec, *AAC, *bitexact, "-movflags", "+faststart", str(path)])
    size = path.stat().st_size
    if size > MAX_BYTES:
        path.unlink()
        raise SystemExit(f"{path} came out at {size} bytes, over the {MAX_BYTES}-byte limit")
    return path


if __name__ == "__main__":
    made = make()
    print(f"{made} ({made.stat().st_size} bytes)")
    sys.exit(0)
