#!/usr/bin/env python3
"""Media benchmark: side-by-side ratios on the 60 s 1280x720 reference clip.

    python scripts/bench_media.py [--runs 3] [--clip var/bench/reference.mp4]

* analysis (Montage's one-pass graph + parsing) vs a bare decode ``ffmpeg -i X -f null -``;
* render (Montage's loudness measuring pass + single-encode render + loudness check) vs one
  hand-written ffmpeg filter_complex with the same cuts, preset and CRF, its loudness done the way
  Montage decides it (an ebur128 measuring pass counted too, then one gain, and the 192 kHz limiter
  only when the gained true peak would pass the ceiling);
* loudness, audio only: Montage's chain (measuring pass(es), then gain / limiter) vs the chain it
  replaced (ffmpeg loudnorm's two passes, up to commit 703f286), on the reference montage and on a
  hot 5.1 clip whose peaks need the limiter (scripts/build_corpus.py's hot51_ac3.mp4);
* ROVER fusion of 3 transcripts x 10,000 words.

Runs are interleaved (A, B, A, B, ...) and the median is reported.  CPU time (user+sys of this
process and its children) is the figure to compare on a shared machine; wall time is printed too,
and the 1-minute load average at the start and the end.
Not a test: it prints figures (targets: analysis <= 1.15x, render <= 1.2x, loudness <= 1.0x of
loudnorm's CPU, ROVER < 200 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from build_corpus import LOUDNESS_CORPUS, build_loud_clip, build_reference

ROOT = Path(__file__).resolve().parent.parent


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    cpu0, wall0 = _cpu(), time.perf_counter()
    fn()
    return _cpu() - cpu0, time.perf_counter() - wall0


def side_by_side(
    name: str,
    ours: Callable[[], object],
    base: Callable[[], object],
    runs: int,
    target: float,
    base_name: str = "baseline",
) -> None:
    ours_cpu, ours_wall, base_cpu, base_wall = [], [], [], []
    base()  # warm-up (page cache, first-run costs) on both sides
    ours()
    for _ in range(runs):
        c, w = measure(base)
        base_cpu.append(c)
        base_wall.append(w)
        c, w = measure(ours)
        ours_cpu.append(c)
        ours_wall.append(w)
    cpu_ratio = statistics.median(ours_cpu) / statistics.median(base_cpu)
    wall_ratio = statistics.median(ours_wall) / statistics.median(base_wall)
    verdict = "PASS" if cpu_ratio <= target else "FAIL"
    print(
        f"{name:<9} montage cpu {statistics.median(ours_cpu):6.2f}s wall {statistics.median(ours_wall):6.2f}s | "
        f"{base_name} cpu {statistics.median(base_cpu):6.2f}s wall {statistics.median(base_wall):6.2f}s | "
        f"ratio cpu {cpu_ratio:.3f}x wall {wall_ratio:.3f}x (target <= {target}x, {verdict} on cpu; runs={runs})"
    )


def _cut_chains(plan: object) -> tuple[list[str], list[str], list[str]]:
    """Hand-written inputs and per-segment video/audio chains for ``plan`` (one source), no Montage code."""
    segs = plan.segments  # type: ignore[attr-defined]
    render = plan.render  # type: ignore[attr-defined]
    src = plan.sources[0].path  # type: ignore[attr-defined]
    inputs: list[str] = []
    vchains, achains = [], []
    for i, s in enumerate(segs):
        d = s.end - s.start
        inputs += ["-ss", f"{s.start:.6f}", "-t", f"{d + 0.25:.6f}", "-i", src]
        vchains.append(
            f"[{i}:v:0]setpts=PTS-STARTPTS,fps={render.fps},scale={render.width}:{render.height},setsar=1,"
            f"format=yuv420p,trim=duration={d:.6f},setpts=PTS-STARTPTS[v{i}]"
        )
        achains.append(
            f"[{i}:a:0]asetpts=PTS-STARTPTS,aresample=48000,aformat=channel_layouts=stereo,apad,"
            f"atrim=duration={d:.6f},asetpts=PTS-STARTPTS[a{i}]"
        )
    return inputs, vchains, achains


def _ffmpeg_stderr(ffmpeg: str, args: list[str]) -> str:
    argv = [ffmpeg, "-hide_banner", "-nostdin", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=True).stderr


def _last_float(pattern: str, text: str) -> float:
    found = re.findall(pattern, text)
    return float(found[-1]) if found and found[-1] not in {"-inf", "nan"} else float("-inf")


def handwritten_gain(ffmpeg: str, plan: object) -> str:
    """What one would write by hand for Montage's loudness rule: measure the mix with ebur128 (integrated
    loudness, true peak), one constant gain, and a 192 kHz lookahead limiter only when the gained true
    peak would pass the ceiling.  Returns the audio filters to append (no re-measure of the limited chain)."""
    inputs, _, achains = _cut_chains(plan)
    n = len(achains)
    lt = plan.render.loudness  # type: ignore[attr-defined]
    graph = ";".join(achains) + ";" + "".join(f"[a{i}]" for i in range(n)) + f"concat=n={n}:v=0:a=1,"
    graph += "ebur128=peak=true[out]"
    err = _ffmpeg_stderr(ffmpeg, [*inputs, "-filter_complex", graph, "-map", "[out]", "-f", "null", "-"])
    summary = err[err.rfind("Summary:") :]
    integrated = _last_float(r"I:\s*(-?[\d.]+|-inf|nan)\s*LUFS", summary)
    peak = _last_float(r"Peak:\s*(-?[\d.]+|-inf|nan)\s*dBFS", summary)
    gain = lt.integrated - integrated if integrated > -70 else 0.0
    chain = f"volume={gain:.2f}dB:precision=double"
    if peak + gain > lt.true_peak:
        limit = 10 ** (lt.true_peak / 20)
        chain += f",aresample=192000,alimiter=limit={limit:.6f}:attack=5:release=80:level=0:latency=1,aresample=48000"
    return chain


def handwritten_render(ffmpeg: str, plan: object, out: Path, threads: int) -> None:
    """The same montage as one hand-written command (plus its loudness measuring pass), no Montage code."""
    render = plan.render  # type: ignore[attr-defined]
    inputs, vchains, achains = _cut_chains(plan)
    n = len(vchains)
    norm = handwritten_gain(ffmpeg, plan) + ",aresample=48000"
    pairs = "".join(f"[v{i}][a{i}]" for i in range(n))
    graph = ";".join(vchains + achains) + f";{pairs}concat=n={n}:v=1:a=1[v][a0];[a0]{norm}[a]"
    subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *inputs, "-filter_complex", graph,
         "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", render.preset, "-crf", str(render.crf),
         "-pix_fmt", "yuv420p", "-threads", str(threads), "-c:a", "aac", "-b:a", render.audio_bitrate, "-movflags",
         "+faststart", str(out)],
        check=True, timeout=3600,
    )  # fmt: skip


LRA_LOUDNORM = 11.0  # loudnorm's LRA target as the pre-change chain used it (its old default)


def loudnorm_two_pass(ffmpeg: str, plan: object) -> None:
    """The loudness chain Montage had before its measured gain (up to 703f286): loudnorm's measuring
    pass, then loudnorm ``linear=true`` with those figures, audio only (to a null muxer)."""
    inputs, _, achains = _cut_chains(plan)
    n = len(achains)
    lt = plan.render.loudness  # type: ignore[attr-defined]
    mix = ";".join(achains) + ";" + "".join(f"[a{i}]" for i in range(n)) + f"concat=n={n}:v=0:a=1,"
    first = mix + f"loudnorm=I={lt.integrated}:TP={lt.true_peak}:LRA={LRA_LOUDNORM}:print_format=json[out]"
    err = _ffmpeg_stderr(ffmpeg, [*inputs, "-filter_complex", first, "-map", "[out]", "-f", "null", "-"])
    m = json.loads(err[err.rfind("{") : err.rfind("}") + 1])
    second = mix + (
        f"loudnorm=I={lt.integrated}:TP={lt.true_peak}:LRA={LRA_LOUDNORM}:measured_I={m['input_i']}:"
        f"measured_TP={m['input_tp']}:measured_LRA={m['input_lra']}:measured_thresh={m['input_thresh']}:"
        f"offset={m['target_offset']}:linear=true,aresample=48000[out]"
    )
    _ffmpeg_stderr(ffmpeg, [*inputs, "-filter_complex", second, "-map", "[out]", "-f", "null", "-"])


def montage_loudness(plan: object, infos: list[object], tools: object) -> object:
    """Montage's loudness chain, audio only: its measuring pass(es), then the mix with the gain (and the
    limiter when it decided one) to a null muxer."""
    import ffmpeg as ffmpeg_python

    from montage.media import loudness, render
    from montage.media.ffmpeg import run_ffmpeg

    decided = render.measure_loudness(plan, infos, tools)  # type: ignore[arg-type]
    audio = render._mix(plan, infos)  # type: ignore[arg-type]
    audio = loudness.apply(audio, decided.gain_db, decided.limit, decided.ceiling_db)
    args = ffmpeg_python.output(audio, "-", f="null").compile(cmd="ffmpeg")[1:]
    run_ffmpeg(tools, args, what="loudness bench")  # type: ignore[arg-type]
    return decided


def rover_bench(runs: int) -> None:
    from montage.media.rover import Word, fuse

    def synthetic(seed: int) -> list[Word]:
        rng, base = random.Random(seed), random.Random(0)
        out, t = [], 0.0
        for _ in range(10_000):
            word = f"w{base.randrange(500)}" if rng.random() > 0.1 else f"w{rng.randrange(500)}"
            dur = 0.2 + base.random() * 0.2
            out.append(Word(word, t + rng.uniform(-0.03, 0.03), t + dur, rng.uniform(0.5, 1.0)))
            t += dur + 0.05
        return out

    transcripts = [synthetic(s) for s in (1, 2, 3)]
    timings = []
    for _ in range(runs + 2):
        started = time.perf_counter()
        fused = fuse(transcripts)
        timings.append(time.perf_counter() - started)
    ms = statistics.median(timings) * 1000
    verdict = "PASS" if ms < 200 else "FAIL"
    print(f"rover     3 x 10,000 words -> {len(fused)} words in {ms:.1f} ms (median of {len(timings)}; "
          f"target < 200 ms, {verdict})")  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clip", type=Path, default=ROOT / "var" / "bench" / "reference.mp4")
    args = parser.parse_args(argv)

    from montage.media.analysis import analyse
    from montage.media.ffmpeg import tools_from_settings
    from montage.media.pipeline import RunOptions, StageReporter, plan_montage, render_plan
    from montage.media.video_processor import file_sha256, probe

    load0 = os.getloadavg()[0]
    tools = tools_from_settings()
    if not args.clip.exists():
        print(f"building the reference clip {args.clip}")
        build_reference(args.clip, tools.ffmpeg)
    info = probe(args.clip, tools)
    v = info.video[0]
    print(f"clip      {args.clip}: {info.duration:.1f} s {v.width}x{v.height} {v.codec} {float(v.fps):g} fps, "
          f"ffmpeg {tools.ffmpeg_version} ({tools.ffmpeg_source}), threads {tools.threads}")  # fmt: skip
    digest = file_sha256(args.clip)

    def bare_decode() -> None:
        subprocess.run([tools.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", str(tools.threads),
                        "-i", str(args.clip), "-f", "null", "-"], check=True, timeout=3600)  # fmt: skip

    side_by_side("analysis", lambda: analyse(info, tools, sha256=digest, cache_dir=None), bare_decode, args.runs, 1.15)

    with tempfile.TemporaryDirectory(prefix="montage-bench-") as tmp:
        out_dir = Path(tmp)
        options = RunOptions(inputs=[args.clip], output=out_dir / "m.mp4", duration=20.0, framing="centre")
        options.cache_dir = out_dir / "cache"
        plan, infos, _ = plan_montage(options, tools, StageReporter(None))
        size = f"{plan.render.width}x{plan.render.height}"
        print(f"plan      {len(plan.segments)} segments, {plan.duration:.2f} s, {size}, "
              f"preset {plan.render.preset}, CRF {plan.render.crf}")  # fmt: skip
        side_by_side(
            "render",
            lambda: render_plan(plan, infos, tools, out_dir / "ours.mp4", StageReporter(None)),
            lambda: handwritten_render(tools.ffmpeg, plan, out_dir / "hand.mp4", tools.threads),
            args.runs,
            1.2,
        )
        loudness_bench("loudness", plan, infos, tools, args.runs)
        hot = next(c for c in LOUDNESS_CORPUS if c.name == "hot51_ac3.mp4")
        hot_clip = build_loud_clip(tools.ffmpeg, hot, out_dir)
        options = RunOptions(inputs=[hot_clip], output=out_dir / "hot.mp4", duration=5.0, framing="centre")
        hot_plan, hot_infos, _ = plan_montage(options, tools, StageReporter(None))
        loudness_bench("loud-hot", hot_plan, hot_infos, tools, args.runs)
    rover_bench(args.runs)
    print(f"load      1-minute load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    return 0


def loudness_bench(name: str, plan: object, infos: list[object], tools: object, runs: int) -> None:
    decided = montage_loudness(plan, infos, tools)
    path = "limited at 192 kHz (re-measured)" if decided.limit else "linear gain only"  # type: ignore[attr-defined]
    print(f"{name:<9} {plan.duration:.2f} s mix: gain {decided.gain_db:+.2f} dB, {path}")  # type: ignore[attr-defined]
    side_by_side(
        name,
        lambda: montage_loudness(plan, infos, tools),
        lambda: loudnorm_two_pass(tools.ffmpeg, plan),  # type: ignore[attr-defined]
        runs,
        1.0,
        base_name="loudnorm",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
