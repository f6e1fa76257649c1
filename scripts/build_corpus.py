#!/usr/bin/env python3
"""Build test footage with the ffmpeg Montage finds (system, configured, or imageio-ffmpeg's).

    python scripts/build_corpus.py OUTDIR            # the varied corpus (short clips, see CORPUS)
    python scripts/build_corpus.py --reference FILE  # the 60 s 1280x720 H.264/AAC benchmark clip
    python scripts/build_corpus.py --demo FILE       # the ~2 min demo clip scripts/quickstart.py uses

Every clip has real variety: several synthetic "shots" with hard cuts, motion (Game of Life,
cellular automata, moving test patterns), speech-like audio (syllable bursts at a wobbling pitch)
with pauses, and louder, noisier passages.  Runs in the project's virtual environment.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SHOTS = [
    "testsrc2=s={s}:r={r}",
    "life=s={s}:r={r}:mold=10:ratio=0.3:death_color=#202040:life_color=#e0c070",
    "smptehdbars=s={s}:r={r}",
    "cellauto=s={s}:r={r}:rule=110",
    "gradients=s={s}:r={r}:speed=0.05",
    "rgbtestsrc=s={s}:r={r}",
]
# Syllables at ~4 Hz, pitch wobbling 150-250 Hz, pauses where a slow sine dips below zero.
SPEECH = (
    "aevalsrc=exprs='0.45*sin(2*PI*(200+50*sin(2*PI*0.7*t))*t)*(0.5+0.5*sin(2*PI*4.1*t))"
    "*gt(sin(2*PI*t/7.3)+0.35\\,0)':s=48000:c=stereo:d={d}"
)


@dataclass(frozen=True)
class Clip:
    name: str
    video_codec: list[str]
    audio_codec: list[str] | None
    duration: float = 6.0
    size: str = "320x180"
    rate: int = 30
    extra: list[str] = field(default_factory=list)
    rotate: int | None = None
    vfr: bool = False
    channels: int = 2


X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "96k"]
CORPUS = [
    Clip("hevc.mkv", ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"], AAC),
    Clip(
        "vp9.webm",
        ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"],
        ["-c:a", "libopus", "-b:a", "64k"],
    ),  # fmt: skip
    Clip(
        "mpeg2_interlaced.ts",
        ["-c:v", "mpeg2video", "-q:v", "6", "-flags", "+ilme+ildct", "-top", "1"],
        ["-c:a", "mp2", "-b:a", "128k"],
        rate=25,
    ),  # fmt: skip
    Clip("prores.mov", ["-c:v", "prores_ks", "-profile:v", "0"], ["-c:a", "pcm_s16le"], duration=4.0, size="256x144"),
    Clip("phone_vfr_rotated.mp4", X264, AAC, size="320x180", rotate=90, vfr=True),
    Clip("surround51.mp4", X264, AAC, channels=6),
    Clip("no_audio.mp4", X264, None),
    Clip("anamorphic.mp4", X264, AAC, size="240x180", extra=["-aspect", "16:9"]),
]


def find_ffmpeg() -> str:
    from montage.media.ffmpeg import tools_from_settings

    return tools_from_settings().ffmpeg


def _run(ffmpeg: str, args: list[str]) -> None:
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    subprocess.run(argv, check=True, timeout=1800)


def footage_args(
    duration: float, size: str, rate: int, shot_s: list[float], loud: tuple[float, float] | None, audio: bool = True
) -> list[str]:
    """Inputs and a filter graph: shots cut hard one after another, speech-like audio, an optional loud passage."""
    inputs: list[str] = []
    labels = []
    t = 0.0
    i = 0
    while t < duration - 1e-6:
        length = min(shot_s[i % len(shot_s)], duration - t)
        inputs += ["-f", "lavfi", "-t", f"{length:.3f}", "-i", SHOTS[i % len(SHOTS)].format(s=size, r=rate)]
        labels.append(f"[{i}:v]")
        t += length
        i += 1
    n = len(labels)
    graph = "".join(f"{label}setsar=1,format=yuv420p[c{k}];" for k, label in enumerate(labels))
    graph += "".join(f"[c{k}]" for k in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    if not audio:
        return [*inputs, "-filter_complex", graph, "-map", "[v]", "-t", f"{duration}"]
    graph += ";"
    inputs += ["-f", "lavfi", "-i", SPEECH.format(d=duration)]
    inputs += ["-f", "lavfi", "-i", f"anoisesrc=c=pink:a=0.35:r=48000:d={duration}"]
    if loud:
        a, b = loud
        graph += f"[{n + 1}:a]aformat=channel_layouts=stereo,volume='between(t,{a},{b})':eval=frame[noise];"
        graph += f"[{n}:a]volume='if(between(t,{a},{b}),1.8,1)':eval=frame[voice];"
        graph += "[voice][noise]amix=inputs=2:normalize=0[a]"
    else:
        graph += f"[{n}:a]anull[a]"
    return [*inputs, "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-t", f"{duration}"]


def build_clip(ffmpeg: str, clip: Clip, out: Path) -> Path:
    path = out / clip.name
    args = footage_args(clip.duration, clip.size, clip.rate, [2.5, 1.5, 2.0], (3.0, 4.5), clip.audio_codec is not None)
    codec = [*clip.video_codec, *(clip.audio_codec or []), *clip.extra]
    if clip.audio_codec is not None and clip.channels != 2:
        codec += ["-ac", str(clip.channels)]
    if clip.vfr:
        # Drop 4 of every 10 frames, keep timestamps: a variable frame rate like a phone under low light.
        args[args.index("-filter_complex") + 1] = args[args.index("-filter_complex") + 1].replace(
            "[v]", "[v0];[v0]select='not(between(mod(n\\,10)\\,3\\,6))'[v]", 1
        )
        codec += ["-fps_mode", "vfr"]
    if clip.rotate is None:
        _run(ffmpeg, [*args, *codec, str(path)])
        return path
    with tempfile.TemporaryDirectory(prefix="montage-corpus-") as tmp:
        flat = Path(tmp) / ("flat" + path.suffix)
        _run(ffmpeg, [*args, *codec, str(flat)])
        _run(
            ffmpeg, ["-i", str(flat), "-map", "0", "-c", "copy", "-metadata:s:v:0", f"rotate={clip.rotate}", str(path)]
        )
    return path


def build_corpus(out: Path, ffmpeg: str | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    binary = ffmpeg or find_ffmpeg()
    return [build_clip(binary, clip, out) for clip in CORPUS]


def build_reference(path: Path, ffmpeg: str | None = None) -> Path:
    """The benchmark input: 60 s, 1280x720, 30 fps, H.264 (veryfast, CRF 23) + AAC."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = footage_args(60.0, "1280x720", 30, [7.0, 4.0, 9.0, 5.0, 11.0, 6.0], (40.0, 48.0))
    _run(ffmpeg or find_ffmpeg(), [*args, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt",
                                   "yuv420p", *AAC, "-movflags", "+faststart", str(path)])  # fmt: skip
    return path


def build_demo(path: Path, ffmpeg: str | None = None, duration: float = 120.0) -> Path:
    """The quick-start clip: ~2 min, 640x360, shots of 3-11 s, speech with pauses, a loud climax."""
    path.parent.mkdir(parents=True, exist_ok=True)
    loud = (duration * 0.68, duration * 0.8)
    args = footage_args(duration, "640x360", 30, [8.0, 3.0, 11.0, 5.0, 4.0, 9.0, 6.0], loud)
    _run(ffmpeg or find_ffmpeg(), [*args, *X264, "-crf", "26", *AAC, "-movflags", "+faststart", str(path)])
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", nargs="?", type=Path, help="where to build the corpus")
    parser.add_argument("--reference", type=Path, metavar="FILE", help="build the 60 s 1280x720 benchmark clip")
    parser.add_argument("--demo", type=Path, metavar="FILE", help="build the ~2 min quick-start clip")
    parser.add_argument("--demo-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not (args.outdir or args.reference or args.demo):
        parser.error("name OUTDIR, --reference FILE or --demo FILE")
    try:
        build(args)
    except subprocess.CalledProcessError as exc:
        print(f"build_corpus: ffmpeg failed (exit {exc.returncode}); its message is above.", file=sys.stderr)
        return 8
    return 0


def build(args: argparse.Namespace) -> None:
    if args.outdir:
        for path in build_corpus(args.outdir):
            print(path)
    if args.reference:
        print(build_reference(args.reference))
    if args.demo:
        print(build_demo(args.demo, duration=args.demo_seconds))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
