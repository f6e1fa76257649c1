#!/usr/bin/env python3
"""Build test footage with the ffmpeg Montage finds (system, configured, or imageio-ffmpeg's).

    python scripts/build_corpus.py OUTDIR            # the varied corpus (short clips, see CORPUS)
    python scripts/build_corpus.py --reference FILE  # the 60 s 1280x720 H.264/AAC benchmark clip
    python scripts/build_corpus.py --demo FILE       # the ~2 min demo clip scripts/quickstart.py uses
    python scripts/build_corpus.py --loudness OUTDIR # audio like real recordings (LOUDNESS_CORPUS)

Every clip has real variety: several synthetic "shots" with hard cuts, motion (Game of Life,
cellular automata, moving test patterns), speech-like audio (syllable bursts at a wobbling pitch)
with pauses, and louder, noisier passages.  Runs in the project's virtual environment.

The loudness corpus is what real recordings bring and generated footage at a comfortable level
does not: a few seconds long, quiet (-35 LUFS) or hot (-8 LUFS), mono / 5.1 / 7.1, large level
steps, silence before the speech, audio starting late or ending early, AAC / AC-3 / Opus / PCM, and
speech with plosive-like transients (a peak-to-loudness ratio like a close microphone's).  Its
video is synthetic (a moving test pattern).  :func:`build_real_speech` uses real recordings: the
spoken channel names Debian's alsa-utils ships in /usr/share/sounds/alsa.
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


# Speech-like mono: 4 Hz syllables at a wobbling pitch with pauses, plus a short plosive-like burst
# every 1.3 s (these transients set the true peak, as on a close microphone).
SPEECH_MONO = (
    "(sin(2*PI*(190+50*sin(2*PI*0.7*t))*t)*(0.55+0.45*sin(2*PI*4*t))*gt(sin(2*PI*t/1.9)+0.4\\,0)"
    "+3*exp(-300*mod(t\\,1.3))*sin(2*PI*2200*t))"
)
LAYOUTS = {
    "mono": "anull",
    "stereo": "pan=stereo|FL=c0|FR=0.9*c0",
    "5.1": "pan=5.1|FC=c0|FL=0.25*c0|FR=0.2*c0|BL=0.05*c0|BR=0.05*c0",  # dialogue in the centre
    "7.1": "pan=7.1|FC=c0|FL=0.25*c0|FR=0.2*c0|SL=0.06*c0|SR=0.06*c0|BL=0.03*c0|BR=0.03*c0",
}


@dataclass(frozen=True)
class LoudClip:
    """One recording-like clip: ``lufs`` integrated, ``envelope`` (an expression of t) shaping the speech."""

    name: str
    layout: str
    audio_codec: list[str]
    lufs: float
    envelope: str = "1"
    duration: float = 5.3
    audio_start: float = 0.0  # the audio stream starts this late in the container
    audio_end: float | None = None  # and ends here (None: with the video)


AC3 = ["-c:a", "ac3", "-b:a", "384k"]
OPUS = ["-c:a", "libopus", "-b:a", "128k"]
PCM = ["-c:a", "pcm_s16le"]
STEPS = "if(lt(t\\,1.8)\\,0.06\\,if(lt(t\\,3.4)\\,1\\,0.12))"  # 24 dB up, then 18 dB down
LOUDNESS_CORPUS = [
    # the reported failure: 5.3 s, quiet 5.1 AAC, wide loudness range
    LoudClip("quiet51_steps_aac.mp4", "5.1", [*AAC[:2], "-b:a", "256k"], -34.0, STEPS),
    LoudClip("quiet_mono_pcm.mov", "mono", PCM, -35.0, "gt(t\\,2.2)"),  # silence, then speech
    LoudClip("quiet71_opus.mkv", "7.1", OPUS, -35.0, STEPS),
    LoudClip("hot_stereo_ac3.mkv", "stereo", AC3, -8.0, STEPS),
    LoudClip("hot51_ac3.mp4", "5.1", AC3, -8.0),
    LoudClip("hot_mono_opus.mkv", "mono", OPUS, -8.0, "gt(t\\,1.5)"),
    LoudClip("late_audio_aac.mp4", "stereo", AAC, -35.0, audio_start=1.5),
    LoudClip("early_end_pcm.mov", "5.1", PCM, -30.0, STEPS, audio_end=3.6),
]


def _measured_lufs(ffmpeg: str, path: Path) -> float:
    """Integrated loudness by ebur128, only to scale a generated clip to its nominal level."""
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-i", str(path), "-af", "ebur128", "-f", "null", "-"]
    err = subprocess.run(argv, check=True, timeout=300, capture_output=True, text=True).stderr
    return float(err.rsplit("I:", 1)[1].split("LUFS")[0])


def _encode_at(ffmpeg: str, wav: Path, clip: LoudClip, path: Path, video_s: float) -> Path:
    """Mux synthetic video with ``wav`` scaled to ``clip.lufs``, the audio offset/cut as the clip says."""
    gain = clip.lufs - _measured_lufs(ffmpeg, wav)
    video = ["-f", "lavfi", "-i", f"testsrc2=s=320x180:r=30:d={video_s}"]
    audio = ["-itsoffset", f"{clip.audio_start}", "-i", str(wav)] if clip.audio_start else ["-i", str(wav)]
    _run(ffmpeg, [*video, *audio, "-map", "0:v", "-map", "1:a", "-af", f"volume={gain:.2f}dB", *X264,
                  *clip.audio_codec, "-ar", "48000", str(path)])  # fmt: skip
    return path


def build_loud_clip(ffmpeg: str, clip: LoudClip, out: Path) -> Path:
    audio_s = (clip.audio_end or clip.duration) - clip.audio_start
    with tempfile.TemporaryDirectory(prefix="montage-corpus-") as tmp:
        wav = Path(tmp) / "audio.wav"
        source = f"aevalsrc=exprs='{SPEECH_MONO}*({clip.envelope})':s=48000:d={audio_s}"
        _run(ffmpeg, ["-f", "lavfi", "-i", source, "-af", f"volume=0.2,{LAYOUTS[clip.layout]}",
                      "-c:a", "pcm_f32le", str(wav)])  # fmt: skip
        return _encode_at(ffmpeg, wav, clip, out / clip.name, clip.duration)


def build_loudness_corpus(out: Path, ffmpeg: str | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    binary = ffmpeg or find_ffmpeg()
    return [build_loud_clip(binary, clip, out) for clip in LOUDNESS_CORPUS]


ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
REAL_SPEECH = ["Front_Center", "Front_Left", "Rear_Right", "Side_Left"]


def build_real_speech(path: Path, ffmpeg: str | None = None, sounds: Path = ALSA_SOUNDS, lufs: float = -34.0) -> Path:
    """5.3 s of real speech (alsa-utils' recorded channel names) in a quiet 5.1 AAC clip with level steps.

    The words come at 0.3, 1.7, 3.0 and 4.2 s, the second 20 dB softer and the last 12 dB louder than
    the first, in the centre channel with a little in the fronts; the video is synthetic.
    """
    inputs: list[str] = []
    chains = []
    for k, (name, delay, db) in enumerate(zip(REAL_SPEECH, [300, 1700, 3000, 4200], [0, -20, -6, 12], strict=True)):
        inputs += ["-i", str(sounds / f"{name}.wav")]
        chains.append(f"[{k}:a]aresample=48000,volume={db}dB,adelay={delay}[w{k}]")
    n = len(REAL_SPEECH)
    graph = ";".join(chains) + ";" + "".join(f"[w{k}]" for k in range(n))
    graph += f"amix=inputs={n}:normalize=0,apad,atrim=0:5.3,{LAYOUTS['5.1']}[a]"
    clip = LoudClip(path.name, "5.1", [*AAC[:2], "-b:a", "256k"], lufs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="montage-corpus-") as tmp:
        wav = Path(tmp) / "speech.wav"
        _run(ffmpeg or find_ffmpeg(), [*inputs, "-filter_complex", graph, "-map", "[a]", "-c:a", "pcm_f32le", str(wav)])
        return _encode_at(ffmpeg or find_ffmpeg(), wav, clip, path, 5.3)


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
    parser.add_argument("--loudness", type=Path, metavar="OUTDIR", help="build the loudness corpus")
    args = parser.parse_args(argv)
    if not (args.outdir or args.reference or args.demo or args.loudness):
        parser.error("name OUTDIR, --reference FILE, --demo FILE or --loudness OUTDIR")
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
    if args.loudness:
        for path in build_loudness_corpus(args.loudness):
            print(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
