"""``montage probe INPUT [--json]``: what Montage sees in a media file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from montage.errors import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="INPUT", help="media file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from montage.media.ffmpeg import tools_from_settings
    from montage.media.video_processor import probe

    tools = tools_from_settings()
    info = probe(args.input, tools)
    if args.json:
        print(json.dumps(info.to_json(), indent=2))
        return ExitCode.OK
    print(f"{info.path}: {info.format}, {info.duration:.3f} s, {info.size_bytes} bytes (probed by {info.prober})")
    for v in info.video:
        vfr = ", variable frame rate" if v.variable_frame_rate else ""
        rot = f", rotated {v.rotation} deg" if v.rotation else ""
        print(
            f"  video #{v.index}: {v.codec} {v.width}x{v.height} SAR {v.sar} DAR {v.dar} -> "
            f"{v.display_width}x{v.display_height}, {float(v.fps):.3f} fps ({v.fps}), {v.pix_fmt}{rot}{vfr}"
        )
    for a in info.audio:
        print(f"  audio #{a.index}: {a.codec} {a.sample_rate} Hz, {a.channels} ch ({a.layout})")
    if not info.video:
        print("  no video stream")
    if not info.audio:
        print("  no audio stream")
    return ExitCode.OK
