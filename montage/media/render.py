"""Render an edit plan: cut, frame, fade, concatenate and loudness-normalise in one encode.

Two ffmpeg runs in total: an audio-only pass that measures the montage's loudness (loudnorm's
first pass, JSON on stderr), then one ``filter_complex`` that cuts every segment, frames it for the
target aspect, applies fades / crossfades / captions, concatenates, applies loudnorm with the
measured values and encodes H.264/AAC MP4 with faststart.  Graphs are built with ffmpeg-python,
compiled to argv and run by :func:`montage.media.ffmpeg.run_ffmpeg`.  The output appears atomically
(temp file in the same directory, then ``os.replace``); temp files go on success and failure.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from montage.errors import MediaError
from montage.media.ffmpeg import FFmpegTools, ProgressCallback, filter_path, run_ffmpeg
from montage.media.plan import EditPlan
from montage.media.video_processor import MediaInfo

SILENT_LUFS = -70.0
FRAME_THREAD_SEGMENTS = 8  # above this many segments, decoders run single-threaded to bound memory
LOUDNESS_TOLERANCE_LU = 1.0
_INTEGRATED_RE = re.compile(r"Integrated loudness:\s*\n\s*I:\s*(-?[\d.]+|-inf|nan)\s*LUFS")


@dataclass(frozen=True)
class LoudnessMeasurement:
    input_i: float
    input_tp: float
    input_lra: float
    input_thresh: float
    target_offset: float

    @property
    def silent(self) -> bool:
        return not math.isfinite(self.input_i) or self.input_i <= SILENT_LUFS


@dataclass(frozen=True)
class Verification:
    verdict: str  # PASS, FAIL or INCONCLUSIVE
    target_lufs: float
    measured_lufs: float | None
    reason: str


def _even(value: float) -> int:
    return max(2, int(round(value / 2.0)) * 2)


def output_size(aspect: str, display_w: int, display_h: int) -> tuple[int, int]:
    """Output frame size: 1280x720 / 720x1280, smaller when the source is smaller (no upscaling of tiny clips)."""
    short = min(720, _even(min(display_w, display_h)))
    long = _even(short * 16 / 9)
    return (long, short) if aspect == "16:9" else (short, long)


def _frame(stream: Any, info: MediaInfo, width: int, height: int, crop_x: float) -> Any:
    """Scale/crop/pad one segment's video to ``width`` x ``height`` (display aspect, rotation applied)."""
    video = info.video[0]
    src_ar = video.display_width / max(1, video.display_height)
    out_ar = width / height
    if abs(src_ar - out_ar) / out_ar < 0.01:
        return stream.filter("scale", width, height)
    if src_ar > out_ar:  # wider than the frame: fill the height, crop a window (centre or following motion)
        scaled_w = _even(height * src_ar)
        x = int(min(max(0.0, crop_x * scaled_w - width / 2), scaled_w - width))
        return stream.filter("scale", scaled_w, height).filter("crop", width, height, x, 0)
    scaled_w = min(width, _even(height * src_ar))  # narrower: fit the height, pad the sides
    return stream.filter("scale", scaled_w, height).filter("pad", width, height, (width - scaled_w) // 2, 0)


def _segment_inputs(
    plan: EditPlan, infos: list[MediaInfo], with_video: bool, with_audio: bool
) -> list[tuple[Any, Any]]:
    import ffmpeg

    fps = plan.render.fps
    out: list[tuple[Any, Any]] = []
    # ffmpeg decodes the first frames of every input before the graph starts and keeps each decoder's
    # reference frames until the end: ~24 MB per 720p segment with frame threads, ~14 MB without.
    decoder: dict[str, Any] = {"threads": 1} if len(plan.segments) > FRAME_THREAD_SEGMENTS else {}
    for seg in plan.segments:
        info = infos[seg.source]
        dur = seg.duration
        inp = ffmpeg.input("file:" + str(info.path), ss=f"{seg.start:.6f}", t=f"{dur + 0.25:.6f}", **decoder)
        video = audio = None
        if with_video:
            v = inp["v:0"]
            if info.video[0].interlaced:
                v = v.filter("bwdif", mode="send_frame")
            v = v.filter("setpts", "PTS-STARTPTS").filter("fps", fps=fps)
            v = _frame(
                v, info, plan.render.width, plan.render.height, seg.crop_x if plan.effects.framing == "motion" else 0.5
            )
            v = v.filter("setsar", 1).filter("format", "yuv420p")
            v = v.filter("tpad", stop_mode="clone", stop_duration=0.5).filter("trim", duration=f"{dur:.6f}")
            video = v.filter("setpts", "PTS-STARTPTS")
        if with_audio:
            if info.has_audio:
                a = inp["a:0"].filter("asetpts", "PTS-STARTPTS")
            else:
                a = ffmpeg.input(f"anullsrc=r=48000:cl=stereo:d={dur + 0.25:.6f}", f="lavfi")["a"]
            a = a.filter("aresample", 48000).filter("aformat", sample_fmts="fltp", channel_layouts="stereo")
            a = a.filter("apad").filter("atrim", duration=f"{dur:.6f}").filter("asetpts", "PTS-STARTPTS")
            edge = min(plan.effects.edge_fade, dur / 4)
            if edge > 0:
                a = a.filter("afade", t="in", st=0, d=f"{edge:.4f}")
                a = a.filter("afade", t="out", st=f"{dur - edge:.6f}", d=f"{edge:.4f}")
            audio = a
        out.append((video, audio))
    return out


def _join(plan: EditPlan, parts: list[tuple[Any, Any]], with_video: bool, with_audio: bool) -> tuple[Any, Any]:
    import ffmpeg

    xf = plan.effects.crossfade
    if len(parts) == 1:
        return parts[0]
    if xf <= 0:
        streams = [s for pair in parts for s in pair if s is not None]
        joined = ffmpeg.concat(*streams, v=int(with_video), a=int(with_audio)).node
        video = joined[0] if with_video else None
        audio = joined[1 if with_video else 0] if with_audio else None
        return video, audio
    video, audio = parts[0]
    offset = 0.0
    for seg, (v, a), (prev_seg) in zip(plan.segments[1:], parts[1:], plan.segments[:-1], strict=True):
        offset += prev_seg.duration - xf
        if with_video:
            video = ffmpeg.filter([video, v], "xfade", transition="fade", duration=f"{xf:.4f}", offset=f"{offset:.6f}")
        if with_audio:
            audio = ffmpeg.filter([audio, a], "acrossfade", d=f"{min(xf, seg.duration / 2):.4f}")
    return video, audio


def _fades(plan: EditPlan, video: Any, audio: Any) -> tuple[Any, Any]:
    total = plan.duration
    fi = min(plan.effects.fade_in, total / 3)
    fo = min(plan.effects.fade_out, total / 3)
    if video is not None:
        if fi > 0:
            video = video.filter("fade", t="in", st=0, d=f"{fi:.4f}")
        if fo > 0:
            video = video.filter("fade", t="out", st=f"{total - fo:.6f}", d=f"{fo:.4f}")
    if audio is not None:
        if fi > 0:
            audio = audio.filter("afade", t="in", st=0, d=f"{fi:.4f}")
        if fo > 0:
            audio = audio.filter("afade", t="out", st=f"{total - fo:.6f}", d=f"{fo:.4f}")
    return video, audio


def _compile(node: Any) -> list[str]:
    argv: list[str] = node.compile(cmd="ffmpeg", overwrite_output=False)
    return argv[1:]


def has_output_audio(plan: EditPlan) -> bool:
    return any(s.has_audio for s in plan.sources)


def measure_loudness(
    plan: EditPlan, infos: list[MediaInfo], tools: FFmpegTools, progress: ProgressCallback | None = None
) -> LoudnessMeasurement:
    """Loudnorm's first pass over the montage's audio (exactly the audio the render will normalise).

    The same pass also runs the ``ebur128`` meter: its integrated loudness is what the linear gain is
    computed from, because loudnorm's own estimate can be off by about 1 LU on material with large
    level steps, and ``ebur128`` is also what checks the result.
    """
    import ffmpeg

    parts = _segment_inputs(plan, infos, with_video=False, with_audio=True)
    _, audio = _join(plan, parts, with_video=False, with_audio=True)
    _, audio = _fades(plan, None, audio)
    target = plan.render.loudness
    split = audio.filter_multi_output("asplit")
    normed = split[0].filter("loudnorm", I=target.integrated, TP=target.true_peak, LRA=target.lra, print_format="json")
    metered = split[1].filter("ebur128")
    spec = ffmpeg.merge_outputs(ffmpeg.output(normed, "-", f="null"), ffmpeg.output(metered, "-", f="null"))
    run = run_ffmpeg(tools, _compile(spec), what="loudness measurement", total_s=plan.duration, progress=progress)
    measured = parse_loudnorm_json(run.stderr)
    reference = _integrated(run.stderr)
    if reference is not None and not measured.silent:
        measured = LoudnessMeasurement(
            reference, measured.input_tp, measured.input_lra, measured.input_thresh, measured.target_offset
        )
    return measured


def parse_loudnorm_json(stderr: str) -> LoudnessMeasurement:
    """The JSON block loudnorm prints on stderr at the end of a run."""
    start = stderr.rfind("{")
    end = stderr.rfind("}")
    if start < 0 or end < start:
        raise MediaError("loudnorm printed no measurement; cannot normalise the audio.", stderr_tail=stderr[-2000:])
    try:
        data = json.loads(stderr[start : end + 1])
        return LoudnessMeasurement(
            input_i=float(data["input_i"]),
            input_tp=float(data["input_tp"]),
            input_lra=float(data["input_lra"]),
            input_thresh=float(data["input_thresh"]),
            target_offset=float(data["target_offset"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise MediaError(
            f"loudnorm's measurement is not the expected JSON: {exc}.", stderr_tail=stderr[-2000:]
        ) from exc


def _ass_time(t: float) -> str:
    cs = int(round(t * 100))
    return f"{cs // 360000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


def _ass_text(text: str) -> str:
    # ASS override blocks start with '{'; a backslash starts an escape: neutralise both.
    return text.replace("\\", "\u29f5").replace("{", "(").replace("}", ")").replace("\n", " ")


def write_ass(plan: EditPlan, path: Path) -> None:
    """Captions as an ASS file (the text never goes into the filter string)."""
    w, h = plan.render.width, plan.render.height
    size = max(12, h // 18)
    lines = [
        "[Script Info]",
        "ScriptType: v4.00+",
        f"PlayResX: {w}",
        f"PlayResY: {h}",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, OutlineColour, BorderStyle, Outline, Shadow, Alignment, "
        "MarginL, MarginR, MarginV",
        f"Style: Default,DejaVu Sans,{size},&H00FFFFFF,&H00000000,1,2,0,2,20,20,{max(10, h // 14)}",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Text",
    ]
    for cap in plan.effects.captions:
        lines.append(f"Dialogue: 0,{_ass_time(cap.start)},{_ass_time(cap.end)},Default,{_ass_text(cap.text)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def render(
    plan: EditPlan,
    infos: list[MediaInfo],
    tools: FFmpegTools,
    output: Path,
    *,
    measurement: LoudnessMeasurement | None,
    progress: ProgressCallback | None = None,
) -> None:
    """The single encode: every segment, effects, loudnorm (second pass) -> ``output`` (atomic)."""
    import ffmpeg

    with_audio = has_output_audio(plan)
    output.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="montage-render-"))
    fd, tmp_name = tempfile.mkstemp(prefix=".montage-partial-", suffix=".mp4", dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        parts = _segment_inputs(plan, infos, with_video=True, with_audio=with_audio)
        video, audio = _join(plan, parts, with_video=True, with_audio=with_audio)
        video, audio = _fades(plan, video, audio)
        if plan.effects.captions:
            ass = workdir / "captions.ass"
            write_ass(plan, ass)
            video = video.filter("subtitles", filter_path(ass))
        streams = [video]
        out_opts: dict[str, Any] = {
            "vcodec": "libx264",
            "preset": plan.render.preset,
            "crf": plan.render.crf,
            "pix_fmt": "yuv420p",
            "r": plan.render.fps,
            "movflags": "+faststart",
            "threads": tools.threads,
            "f": "mp4",
        }
        if with_audio:
            target = plan.render.loudness
            if measurement is not None and not measurement.silent:
                audio = audio.filter(
                    "loudnorm",
                    I=target.integrated,
                    TP=target.true_peak,
                    LRA=target.lra,
                    measured_I=f"{measurement.input_i:.2f}",
                    measured_TP=f"{measurement.input_tp:.2f}",
                    measured_LRA=f"{measurement.input_lra:.2f}",
                    measured_thresh=f"{measurement.input_thresh:.2f}",
                    offset=f"{measurement.target_offset:.2f}",
                    linear="true",
                )
            audio = audio.filter("aresample", 48000).filter("aformat", channel_layouts="stereo")
            streams.append(audio)
            out_opts.update({"acodec": "aac", "audio_bitrate": plan.render.audio_bitrate, "ar": 48000})
        args = _compile(ffmpeg.output(*streams, "file:" + str(tmp), **out_opts))
        run_ffmpeg(tools, args, what=f"render of {output}", total_s=plan.duration, progress=progress)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def measure_integrated(tools: FFmpegTools, path: Path) -> float | None:
    """Integrated loudness of ``path``'s first audio stream by the ebur128 filter (independent of loudnorm)."""
    args = ["-i", "file:" + str(path), "-map", "0:a:0", "-af", "ebur128", "-f", "null", "-"]
    run = run_ffmpeg(tools, args, what=f"loudness check of {path}")
    return _integrated(run.stderr)


def _integrated(stderr: str) -> float | None:
    """The integrated loudness in ebur128's summary (None when silent or absent)."""
    # The last summary: ffmpeg may configure (and tear down, printing a summary) a graph more than once.
    found = _INTEGRATED_RE.findall(stderr)
    if not found or found[-1] in {"-inf", "nan"}:
        return None
    value = float(found[-1])
    return value if value > SILENT_LUFS else None


def verify_loudness(tools: FFmpegTools, path: Path, target: float) -> Verification:
    measured = measure_integrated(tools, path)
    if measured is None:
        return Verification("INCONCLUSIVE", target, None, "the output's audio is silent; nothing to measure")
    ok = abs(measured - target) <= LOUDNESS_TOLERANCE_LU
    reason = f"measured {measured:.1f} LUFS, target {target:.1f} LUFS, tolerance {LOUDNESS_TOLERANCE_LU:g} LU"
    return Verification("PASS" if ok else "FAIL", target, measured, reason)
