"""Probe media files into typed information (ffprobe when present, PyAV otherwise).

Every unreadable input (missing, zero bytes, truncated, not media, no usable stream) raises
:class:`~montage.errors.MediaError` (exit 8) with a one-paragraph message naming the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from montage.core import proc as core_proc
from montage.core.files import sha256_file
from montage.errors import MediaError
from montage.media.ffmpeg import FFmpegTools, tail

PROBE_TIMEOUT_S = 60.0
INTERLACED_ORDERS = {"tt", "bb", "tb", "bt"}


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    width: int
    height: int
    fps: Fraction  # average frame rate
    pix_fmt: str
    sar: Fraction = Fraction(1)
    rotation: int = 0  # degrees, as the display matrix says (0, 90, 180, 270)
    variable_frame_rate: bool = False
    interlaced: bool = False  # field_order tt/bb/tb/bt: deinterlaced before scaling

    @property
    def display_width(self) -> int:
        """Width as shown: SAR applied, rotation applied."""
        w = round(self.width * self.sar)
        return self.height if self.rotation % 180 else w

    @property
    def display_height(self) -> int:
        w = round(self.width * self.sar)
        return w if self.rotation % 180 else self.height

    @property
    def dar(self) -> Fraction:
        """Display aspect ratio (after SAR and rotation)."""
        return Fraction(self.display_width, max(1, self.display_height))


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    sample_rate: int
    channels: int
    layout: str


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format: str
    duration: float
    size_bytes: int
    video: list[VideoStream] = field(default_factory=list)
    audio: list[AudioStream] = field(default_factory=list)
    prober: str = "ffprobe"

    @property
    def has_video(self) -> bool:
        return bool(self.video)

    @property
    def has_audio(self) -> bool:
        return bool(self.audio)

    def to_json(self) -> dict[str, Any]:
        def conv(value: Any) -> Any:
            if isinstance(value, Fraction):
                return f"{value.numerator}/{value.denominator}"
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: conv(v) for k, v in value.items()}
            if isinstance(value, list):
                return [conv(v) for v in value]
            return value

        data: dict[str, Any] = conv(asdict(self))
        for stream, src in zip(data["video"], self.video, strict=True):
            stream["display_width"] = src.display_width
            stream["display_height"] = src.display_height
            stream["dar"] = conv(src.dar)
            stream["fps_float"] = round(float(src.fps), 6)
        return data


file_sha256 = sha256_file  # the content hash that keys the analysis cache and goes into edit plans


def _fraction(text: str | None, default: Fraction = Fraction(0)) -> Fraction:
    if not text:
        return default
    num, _, den = str(text).replace(":", "/").partition("/")  # "30000/1001" or SAR "4:3"
    try:
        n, d = int(num), int(den or 1)
    except ValueError:
        return default
    return Fraction(n, d) if d else default


def _rotation(value: float | int | None) -> int:
    if value is None:
        return 0
    return int(round(float(value))) % 360


def _check_file(path: Path) -> int:
    if not path.exists():
        raise MediaError(f"Input {str(path)!r} does not exist.")
    if not path.is_file():
        raise MediaError(f"Input {str(path)!r} is not a regular file.")
    size = path.stat().st_size
    if size == 0:
        raise MediaError(f"Input {str(path)!r} is empty (0 bytes); expected a video file such as MP4, MKV or MOV.")
    return size


def probe(path: Path, tools: FFmpegTools | None = None) -> MediaInfo:
    """Typed information about ``path``; ffprobe when ``tools.ffprobe`` is set, else PyAV."""
    path = Path(path)
    size = _check_file(path)
    if tools is not None and tools.ffprobe:
        info = _probe_ffprobe(path, size, tools.ffprobe)
    else:
        info = _probe_pyav(path, size)
    if not info.video and not info.audio:
        raise MediaError(f"Input {str(path)!r} ({info.format}) has neither a video nor an audio stream.")
    if not math.isfinite(info.duration) or info.duration <= 0:
        raise MediaError(
            f"Input {str(path)!r} has no usable duration (got {info.duration}); the file may be truncated "
            "or still being written."
        )
    return info


def _probe_ffprobe(path: Path, size: int, ffprobe: str) -> MediaInfo:
    argv = [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", "file:" + str(path)]
    proc = core_proc.run(argv, timeout_s=PROBE_TIMEOUT_S, new_session=False)  # in the job's process group
    if proc.timed_out:
        raise MediaError(f"Probing {str(path)!r} took longer than {PROBE_TIMEOUT_S:g} s; the file is unusable.")
    if proc.returncode != 0:
        raise MediaError(
            f"Input {str(path)!r} is not readable media: {tail(proc.stderr, 1) or 'ffprobe failed'}. "
            "Expected a video file such as MP4, MKV, MOV, WebM or TS.",
            stderr_tail=tail(proc.stderr),
        )
    data = json.loads(proc.stdout or "{}")
    fmt = data.get("format", {})
    video: list[VideoStream] = []
    audio: list[AudioStream] = []
    for s in data.get("streams", []):
        kind = s.get("codec_type")
        if kind == "video" and not s.get("disposition", {}).get("attached_pic"):
            if not s.get("width") or not s.get("height"):
                continue
            rotation = 0
            for side in s.get("side_data_list", []) or []:
                if "rotation" in side:
                    rotation = _rotation(side["rotation"])
            if not rotation and "rotate" in s.get("tags", {}):
                rotation = _rotation(-float(s["tags"]["rotate"]))
            avg = _fraction(s.get("avg_frame_rate"))
            real = _fraction(s.get("r_frame_rate"))
            fps = avg or real
            sar = _fraction(s.get("sample_aspect_ratio"), Fraction(1)) or Fraction(1)
            video.append(
                VideoStream(
                    index=int(s["index"]),
                    codec=str(s.get("codec_name", "unknown")),
                    width=int(s["width"]),
                    height=int(s["height"]),
                    fps=fps,
                    pix_fmt=str(s.get("pix_fmt", "unknown")),
                    sar=sar,
                    rotation=rotation,
                    variable_frame_rate=bool(avg and real and abs(float(avg) - float(real)) > 0.01 * float(real)),
                    interlaced=str(s.get("field_order", "")) in INTERLACED_ORDERS,
                )
            )
        elif kind == "audio" and int(s.get("channels") or 0) > 0:
            channels = int(s["channels"])
            audio.append(
                AudioStream(
                    index=int(s["index"]),
                    codec=str(s.get("codec_name", "unknown")),
                    sample_rate=int(s.get("sample_rate") or 0),
                    channels=channels,
                    layout=str(s.get("channel_layout") or f"{channels} channels"),
                )
            )
    duration = _duration(fmt.get("duration"), [s.get("duration") for s in data.get("streams", [])])
    return MediaInfo(
        path=path,
        format=str(fmt.get("format_name", "unknown")),
        duration=duration,
        size_bytes=size,
        video=video,
        audio=audio,
        prober="ffprobe",
    )


def _duration(container: Any, streams: list[Any]) -> float:
    for value in [container, *streams]:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    return 0.0


def _probe_pyav(path: Path, size: int) -> MediaInfo:
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore", timeout=PROBE_TIMEOUT_S)
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise MediaError(
            f"Input {str(path)!r} is not readable media: {exc}. Expected a video file such as MP4, MKV, MOV, "
            "WebM or TS."
        ) from exc
    try:
        video: list[VideoStream] = []
        audio: list[AudioStream] = []
        stream_durations: list[float] = []
        for stream in container.streams:
            if stream.duration is not None and stream.time_base is not None:
                stream_durations.append(float(stream.duration * stream.time_base))
            ctx: Any = stream.codec_context
            if stream.type == "video":
                if not ctx.width or not ctx.height or stream.disposition.name == "attached_pic":
                    continue
                avg = Fraction(stream.average_rate) if stream.average_rate else Fraction(0)
                base = Fraction(stream.base_rate) if stream.base_rate else Fraction(0)
                video.append(
                    VideoStream(
                        index=stream.index,
                        codec=ctx.name,
                        width=ctx.width,
                        height=ctx.height,
                        fps=avg or base,
                        pix_fmt=ctx.format.name if ctx.format else "unknown",
                        sar=Fraction(ctx.sample_aspect_ratio) if ctx.sample_aspect_ratio else Fraction(1),
                        rotation=_pyav_rotation(container, stream.index),
                        variable_frame_rate=bool(avg and base and abs(float(avg) - float(base)) > 0.01 * float(base)),
                        interlaced=_pyav_interlaced(getattr(ctx, "field_order", None)),
                    )
                )
            elif stream.type == "audio" and ctx.channels:
                audio.append(
                    AudioStream(
                        index=stream.index,
                        codec=ctx.name,
                        sample_rate=int(ctx.sample_rate or 0),
                        channels=int(ctx.channels),
                        layout=ctx.layout.name if ctx.layout else f"{ctx.channels} channels",
                    )
                )
        container_duration = container.duration / 1_000_000 if container.duration else None
        return MediaInfo(
            path=path,
            format=container.format.name,
            duration=_duration(container_duration, stream_durations),
            size_bytes=size,
            video=video,
            audio=audio,
            prober="pyav",
        )
    finally:
        container.close()


def _pyav_interlaced(order: Any) -> bool:
    """PyAV gives AVFieldOrder as a number (2..5 are TT, BB, TB, BT) or, in some versions, a name."""
    if isinstance(order, int):
        return order in (2, 3, 4, 5)
    return str(order or "").lower() in INTERLACED_ORDERS


def _pyav_rotation(container: Any, index: int) -> int:
    """Rotation from the first decoded frame's display matrix (PyAV exposes it per frame)."""
    import av

    try:
        with av.open(container.name, metadata_errors="ignore", timeout=PROBE_TIMEOUT_S) as again:
            stream = again.streams[index]
            for frame in again.decode(stream):
                return _rotation(getattr(frame, "rotation", 0))
    except (av.error.FFmpegError, StopIteration):
        return 0
    return 0
