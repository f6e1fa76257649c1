"""Render an edit plan: cut, frame, fade, concatenate and loudness-normalise in one encode.

The audio-only passes of :func:`measure_loudness` measure the montage's mix and decide its gain
(:mod:`montage.media.loudness`: one constant gain, a true-peak limiter only when the peaks need it);
then one ``filter_complex`` cuts every segment, frames it for the target aspect, applies fades /
crossfades / captions, concatenates, applies that gain and encodes H.264/AAC MP4 with faststart.
Graphs are built with ffmpeg-python, compiled to argv and run by :func:`montage.media.ffmpeg.run_ffmpeg`.
The output appears atomically (temp file in the same directory, then ``os.replace``); temp files go
on success and failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from montage.core import proc
from montage.core.files import current_umask
from montage.errors import ToolMissing
from montage.media import loudness
from montage.media.ffmpeg import FFmpegTools, ProgressCallback, filter_path, run_ffmpeg
from montage.media.loudness import SILENT_LUFS, LoudnessMeasurement, Normalisation
from montage.media.plan import EditPlan
from montage.media.video_processor import MediaInfo

FRAME_THREAD_SEGMENTS = 8  # above this many segments, decoders run single-threaded to bound memory
LOUDNESS_TOLERANCE_LU = 1.0


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
                # Not PTS-STARTPTS: audio that starts after the cut (a late audio stream) must keep its
                # offset, so the gap is filled with silence from t=0 instead of pulling the sound early.
                a = inp["a:0"].filter("aresample", **{"async": 1, "first_pts": 0})
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


def _mix(plan: EditPlan, infos: list[MediaInfo]) -> Any:
    """The montage's audio exactly as the render builds it: cut, downmixed to stereo 48 kHz, faded, joined."""
    parts = _segment_inputs(plan, infos, with_video=False, with_audio=True)
    _, audio = _join(plan, parts, with_video=False, with_audio=True)
    _, audio = _fades(plan, None, audio)
    return audio


def measure_loudness(
    plan: EditPlan, infos: list[MediaInfo], tools: FFmpegTools, progress: ProgressCallback | None = None
) -> Normalisation:
    """Measure the montage's mix (and, when its peaks need limiting, the limited chain) and decide the gain.

    Every measurement is an audio-only ffmpeg run of the same graph the render uses, metered by
    ``ebur128`` (integrated loudness, true peak); see :mod:`montage.media.loudness`.
    """
    import ffmpeg

    target = plan.render.loudness

    def measure(gain_db: float | None, limit: bool) -> LoudnessMeasurement:
        audio = _mix(plan, infos)
        if gain_db is not None:
            audio = loudness.apply(audio, gain_db, limit, target.true_peak)
        metered = audio.filter("ebur128", peak="true")
        spec = ffmpeg.output(metered, "-", f="null")
        run = run_ffmpeg(tools, _compile(spec), what="loudness measurement", total_s=plan.duration, progress=progress)
        return loudness.parse_ebur128(run.stderr)

    return loudness.normalisation(measure, target.integrated, target.true_peak)


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


FONT_PACKAGE = "fonts-dejavu-core"  # the captions' style names DejaVu Sans
_FONT_DIRS = ["/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts"]


def require_caption_font() -> None:
    """Raise :class:`ToolMissing` (exit 7) before any rendering when no font is there to burn captions with.

    libass finds fonts through fontconfig; with none, ffmpeg renders the montage without the captions
    and says nothing.  ``fc-list`` (honouring ``FONTCONFIG_FILE``) is asked; without fontconfig's
    tools, the usual font directories are looked in.
    """
    fc_list = shutil.which("fc-list")
    if fc_list is not None:
        try:
            found = proc.run([fc_list, ":", "family"], timeout_s=60).stdout.strip()
        except OSError:
            found = ""
        where = "fontconfig (fc-list) lists no fonts"
    else:
        dirs = [Path(d).expanduser() for d in _FONT_DIRS]
        found = next((str(f) for d in dirs if d.is_dir() for f in d.rglob("*.[ot]tf")), "")
        where = "there are no fonts in " + ", ".join(_FONT_DIRS)
    if not found:
        raise ToolMissing(
            f"--captions needs a font to burn the captions in with, and {where}.",
            hint=f"Install one with: apt-get install --no-install-recommends {FONT_PACKAGE} (then run again).",
        )


def render(
    plan: EditPlan,
    infos: list[MediaInfo],
    tools: FFmpegTools,
    output: Path,
    *,
    normalisation: Normalisation | None,
    progress: ProgressCallback | None = None,
) -> None:
    """The single encode: every segment, effects, the loudness normalisation -> ``output`` (atomic)."""
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
            if normalisation is not None and not normalisation.silent:
                audio = loudness.apply(audio, normalisation.gain_db, normalisation.limit, normalisation.ceiling_db)
            audio = audio.filter("aresample", 48000).filter("aformat", channel_layouts="stereo")
            streams.append(audio)
            out_opts.update({"acodec": "aac", "audio_bitrate": plan.render.audio_bitrate, "ar": 48000})
        args = _compile(ffmpeg.output(*streams, "file:" + str(tmp), **out_opts))
        run_ffmpeg(tools, args, what=f"render of {output}", total_s=plan.duration, progress=progress)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp made it 0600; the montage is an ordinary output
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
    """The integrated loudness in ebur128's last summary (None when silent or absent)."""
    value = loudness.parse_ebur128(stderr).input_i
    return value if value > SILENT_LUFS else None


def verify_loudness(tools: FFmpegTools, path: Path, target: float) -> Verification:
    measured = measure_integrated(tools, path)
    if measured is None:
        return Verification("INCONCLUSIVE", target, None, "the output's audio is silent; nothing to measure")
    ok = abs(measured - target) <= LOUDNESS_TOLERANCE_LU
    reason = f"measured {measured:.1f} LUFS, target {target:.1f} LUFS, tolerance {LOUDNESS_TOLERANCE_LU:g} LU"
    return Verification("PASS" if ok else "FAIL", target, measured, reason)
