#!/usr/bin/env python3
"""Peers as yardsticks: Montage's scene cuts and loudness against tools users already trust.

    pip install -e '.[peers]'          # PySceneDetect (scenedetect-headless, OpenCV) + pyloudnorm
    python scripts/peers.py [--out var/peers] [--markdown]

Not a test: it prints two tables.

* **Scene cuts** on generated clips (the video is synthetic: ffmpeg test sources cut hard at known
  times, scripts/build_corpus.py's ``footage_args``) against PySceneDetect's ``ContentDetector``
  (default threshold): a cut agrees when the other side has one within two frames; precision =
  Montage's cuts that PySceneDetect also found / Montage's cuts, recall = PySceneDetect's cuts that
  Montage found / PySceneDetect's cuts.  Both are also scored against the clip's true cuts.  CPU
  time (user+sys, this process and its children) of Montage's whole analysis pass (one decode:
  cuts, motion, audio levels, thumbnails) over PySceneDetect's detection alone.
* **Loudness**: ``montage run`` on each clip (and on the loudness corpus' quiet 5.1 and hot 5.1
  clips, and real speech from alsa-utils when installed); the integrated loudness Montage reports for
  its output against pyloudnorm (ITU-R BS.1770-4, on samples decoded here) and ffmpeg's ``ebur128``
  run here, in LU.

Media is generated (or comes from Debian's alsa-utils), never downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from build_corpus import ALSA_SOUNDS, LOUDNESS_CORPUS, _run, build_loud_clip, build_real_speech, footage_args

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE_FRAMES = 2


@dataclass(frozen=True)
class Footage:
    name: str
    seconds: float
    size: str
    rate: int
    shots: list[float]
    loud: tuple[float, float] | None = None

    def true_cuts(self) -> list[float]:
        """Where footage_args cuts: the shots back to back, cycling through ``shots``."""
        cuts, t, i = [], 0.0, 0
        while True:
            t += self.shots[i % len(self.shots)]
            i += 1
            if t >= self.seconds - 1e-6:
                return cuts
            cuts.append(t)


FOOTAGE = [
    Footage("shots_720p30.mp4", 60.0, "1280x720", 30, [7.0, 4.0, 9.0, 5.0, 11.0, 6.0], (40.0, 48.0)),
    Footage("shots_360p30.mp4", 60.0, "640x360", 30, [8.0, 3.0, 11.0, 5.0, 4.0, 9.0, 6.0], (40.0, 48.0)),
    Footage("fast_cuts_180p25.mp4", 20.0, "320x180", 25, [2.5, 1.5, 2.0], (3.0, 4.5)),
]


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def build_footage(ffmpeg: str, clip: Footage, out: Path) -> Path:
    path = out / clip.name
    if not path.exists():
        args = footage_args(clip.seconds, clip.size, clip.rate, clip.shots, clip.loud)
        _run(ffmpeg, [*args, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                      "-c:a", "aac", "-b:a", "128k", str(path)])  # fmt: skip
    return path


def agreement(ours: list[int], theirs: list[int]) -> int:
    """Cuts of ``ours`` matched one-to-one to a cut of ``theirs`` within TOLERANCE_FRAMES (greedy, in order)."""
    left = sorted(theirs)
    matched = 0
    for frame in sorted(ours):
        hit = next((t for t in left if abs(t - frame) <= TOLERANCE_FRAMES), None)
        if hit is not None:
            left.remove(hit)
            matched += 1
    return matched


def _ratio(num: int, den: int) -> str:
    return f"{num / den:.2f}" if den else "n/a"


def montage_cuts(path: Path, tools: object) -> tuple[list[float], float]:
    from montage.media.analysis import analyse
    from montage.media.video_processor import file_sha256, probe

    info = probe(path, tools)  # type: ignore[arg-type]
    digest = file_sha256(path)
    cpu0 = _cpu()
    result = analyse(info, tools, sha256=digest, cache_dir=None)  # type: ignore[arg-type]
    return result.scene_cuts, _cpu() - cpu0


def pyscenedetect_cuts(path: Path) -> tuple[list[float], float]:
    from scenedetect import ContentDetector, detect

    cpu0 = _cpu()
    scenes = detect(str(path), ContentDetector(), show_progress=False)
    cpu = _cpu() - cpu0
    return [start.get_seconds() for start, _ in scenes[1:]], cpu


def scene_table(clips: list[tuple[Footage, Path]], tools: object) -> list[list[str]]:
    rows = []
    for clip, path in clips:
        ours_s, ours_cpu = montage_cuts(path, tools)
        theirs_s, theirs_cpu = pyscenedetect_cuts(path)
        frames = [round(t * clip.rate) for t in ours_s]
        peer = [round(t * clip.rate) for t in theirs_s]
        truth = [round(t * clip.rate) for t in clip.true_cuts()]
        both = agreement(frames, peer)
        rows.append([
            clip.name, f"{clip.seconds:g} s {clip.size}@{clip.rate}", str(len(truth)), str(len(frames)), str(len(peer)),
            _ratio(both, len(frames)), _ratio(both, len(peer)),
            f"{_ratio(agreement(frames, truth), len(frames))} / {_ratio(agreement(peer, truth), len(peer))}",
            f"{_ratio(agreement(frames, truth), len(truth))} / {_ratio(agreement(peer, truth), len(truth))}",
            f"{ours_cpu:.2f} / {theirs_cpu:.2f} = {ours_cpu / theirs_cpu:.2f}x",
        ])  # fmt: skip
    return rows


def pyloudnorm_lufs(ffmpeg: str, path: Path) -> float:
    import numpy as np
    import pyloudnorm

    raw = subprocess.run(
        [ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "-ac", "2", "-ar", "48000",
         "-"], capture_output=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    samples = np.frombuffer(raw, dtype="<f4").reshape(-1, 2).astype(np.float64)
    return float(pyloudnorm.Meter(48000).integrated_loudness(samples))


def ebur128_lufs(ffmpeg: str, path: Path) -> float:
    err = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0", "-af", "ebur128", "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stderr  # fmt: skip
    return float(re.findall(r"I:\s*(-?[\d.]+)\s*LUFS", err)[-1])


def loudness_table(inputs: list[tuple[str, Path, str]], ffmpeg: str, out: Path) -> list[list[str]]:
    rows = []
    for label, path, duration in inputs:
        result = out / f"{path.stem}.montage.mp4"
        run = subprocess.run(
            [sys.executable, "-m", "montage", "run", "--json", str(path), "-o", str(result), "--duration", duration],
            capture_output=True, text=True, timeout=3600, cwd=ROOT,
        )  # fmt: skip
        if run.returncode != 0:
            rows.append([label, duration, f"exit {run.returncode}", "", "", "", ""])
            continue
        summary = json.loads(run.stdout)
        reported = float(summary["loudness"]["measured_lufs"])
        target = float(summary["loudness"]["target_lufs"])
        by_pyln = pyloudnorm_lufs(ffmpeg, result)
        by_ebur = ebur128_lufs(ffmpeg, result)
        rows.append([
            label, f"{duration} s", f"{target:g}", f"{reported:.2f}", f"{by_pyln:.2f} ({reported - by_pyln:+.2f})",
            f"{by_ebur:.2f} ({reported - by_ebur:+.2f})", f"{by_pyln - target:+.2f}",
        ])  # fmt: skip
    return rows


def show(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "peers", help="where the clips are built")
    args = parser.parse_args(argv)
    try:
        import pyloudnorm  # noqa: F401
        import scenedetect
    except ImportError as exc:
        print(f"peers: {exc.name} is not installed; install the extra with: pip install -e '.[peers]'", file=sys.stderr)
        return 7

    from montage.media.ffmpeg import tools_from_settings

    tools = tools_from_settings()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load0 = os.getloadavg()[0]
    print(f"ffmpeg {tools.ffmpeg_version} ({tools.ffmpeg_source}), threads {tools.threads}; "
          f"PySceneDetect {scenedetect.__version__}; load {load0:.2f}")  # fmt: skip
    clips = [(clip, build_footage(tools.ffmpeg, clip, args.out)) for clip in FOOTAGE]
    show(
        "Scene cuts (synthetic video; agreement within 2 frames)",
        ["clip", "size", "true cuts", "Montage cuts", "PySceneDetect cuts", "precision vs PySceneDetect",
         "recall vs PySceneDetect", "precision vs truth (Montage / PySceneDetect)",
         "recall vs truth (Montage / PySceneDetect)",
         "CPU s: Montage analysis / PySceneDetect detect"],
        scene_table(clips, tools),
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="montage-peers-") as tmp:
        work = Path(tmp)
        loud = [(c.name + " (synthetic)", p, "20") for c, p in clips]
        for name in ("quiet51_steps_aac.mp4", "hot51_ac3.mp4"):
            spec = next(c for c in LOUDNESS_CORPUS if c.name == name)
            loud.append(
                (
                    f"{name} (synthetic, {spec.lufs:g} LUFS {spec.layout})",
                    build_loud_clip(tools.ffmpeg, spec, work),
                    "3",
                )
            )
        if ALSA_SOUNDS.is_dir():
            speech = build_real_speech(work / "alsa_speech51.mp4", tools.ffmpeg)
            loud.append(("alsa-utils speech (real, -34 LUFS 5.1)", speech, "3"))
        show(
            "Loudness of Montage's output (LUFS; difference from Montage's reported figure in LU)",
            ["input", "--duration", "target", "Montage reports", "pyloudnorm", "ffmpeg ebur128", "pyloudnorm - target"],
            loudness_table(loud, tools.ffmpeg, work),
        )  # fmt: skip
    print(
        f"\n{time.perf_counter() - started:.0f} s; load {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
