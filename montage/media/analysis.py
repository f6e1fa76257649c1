"""One-decode analysis: loudness, scene scores, silences, black frames and motion from a single ffmpeg pass.

The video is downscaled cheaply (fast bilinear to 160x90 grey) before any analysis filter, then split
into ``scdet`` + ``blackdetect`` (per-frame metadata to a file) and a 2 fps 32x18 thumbnail stream
(raw bytes, for motion energy and the horizontal motion centre that the 9:16 crop follows).  Audio
goes through ``ebur128`` (per-100 ms momentary/short-term loudness) and ``silencedetect``.  Results
are aggregated into fixed windows and cached as JSON keyed by the input's content hash.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from montage.core.files import atomic_write_text
from montage.errors import MediaError
from montage.media.ffmpeg import FFmpegTools, ProgressCallback, filter_path, run_ffmpeg
from montage.media.video_processor import MediaInfo

ANALYSIS_VERSION = 4
WINDOW_S = 0.5
SCENE_THRESHOLD = 10.0  # scdet score (0..100) at which a frame starts a new shot
SILENCE_DB = -40.0
SILENCE_MIN_S = 0.4
BLACK_MIN_S = 0.3
THUMB_W, THUMB_H, THUMB_FPS = 32, 18, 2
ANALYSIS_W, ANALYSIS_H = 160, 90
FLOOR_LUFS = -70.0

_FRAME_RE = re.compile(r"^frame:\s*\d+\s+pts:\s*-?\d+\s+pts_time:\s*(-?[\d.eE+-]+|nan)")
_BLACK_RE = re.compile(r"black_start:\s*([\d.]+)\s+black_end:\s*([\d.]+)")
_SIL_START_RE = re.compile(r"silence_start:\s*(-?[\d.]+)")
_SIL_END_RE = re.compile(r"silence_end:\s*(-?[\d.]+)")
_INTEGRATED_RE = re.compile(r"Integrated loudness:\s*\n\s*I:\s*(-?[\d.]+|-inf)\s*LUFS")


@dataclass
class Analysis:
    """Per-window features of one input (window length ``window_s``)."""

    duration: float
    window_s: float
    has_audio: bool
    has_video: bool
    loudness: list[float] = field(default_factory=list)  # mean momentary LUFS per window
    motion: list[float] = field(default_factory=list)  # mean absolute frame difference per window (0..100)
    scene: list[float] = field(default_factory=list)  # max scdet score per window
    motion_x: list[float] = field(default_factory=list)  # horizontal centre of motion per window (0..1)
    scene_cuts: list[float] = field(default_factory=list)
    silences: list[tuple[float, float]] = field(default_factory=list)
    blacks: list[tuple[float, float]] = field(default_factory=list)
    integrated_lufs: float | None = None  # of the mono downmix the meter hears
    source_sha256: str = ""
    declared_duration: float | None = None  # set when less than the container's duration decodes
    version: int = ANALYSIS_VERSION

    @property
    def windows(self) -> int:
        return len(self.loudness)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Analysis:
        data = dict(data)
        data["silences"] = [tuple(s) for s in data.get("silences", [])]
        data["blacks"] = [tuple(b) for b in data.get("blacks", [])]
        return cls(**data)


def _rotation_filters(rotation: int) -> list[str]:
    # Same transform as ffmpeg's autorotate, but applied after the downscale, where it is cheap.
    if rotation == 90:
        return ["transpose=cclock"]
    if rotation == 270:
        return ["transpose=clock"]
    if rotation == 180:
        return ["hflip", "vflip"]
    return []


def build_graph(info: MediaInfo, workdir: Path) -> tuple[str, list[str]]:
    """The analysis filter graph and the output arguments (paths inside ``workdir``, which Montage names)."""
    chains: list[str] = []
    outputs: list[str] = []
    video_txt, audio_txt = filter_path(workdir / "video.txt"), filter_path(workdir / "audio.txt")
    if info.has_video:
        rotate = _rotation_filters(info.video[0].rotation)
        # One chain, no split: per-frame detectors first, then the same frames thinned to 2 fps thumbnails.
        chain = [f"scale={ANALYSIS_W}:{ANALYSIS_H}:flags=fast_bilinear", "format=gray", *rotate]
        chain += [f"scdet=threshold={SCENE_THRESHOLD:g}", f"blackdetect=d={BLACK_MIN_S:g}:pix_th=0.10"]
        chain += [f"metadata=mode=print:file={video_txt}", f"fps={THUMB_FPS}"]
        chain += [f"scale={THUMB_W}:{THUMB_H}:flags=area"]
        chains.append("[0:v:0]" + ",".join(chain) + "[thumbs]")
    if info.has_audio:
        # A mono downmix halves the meter's cost; the scorer only compares windows of one input.
        chains.append(
            "[0:a:0]aformat=channel_layouts=mono,ebur128=metadata=1:framelog=verbose,"
            f"silencedetect=n={SILENCE_DB:g}dB:d={SILENCE_MIN_S:g},"
            f"ametadata=mode=print:file={audio_txt}[aout]"
        )
        outputs += ["-map", "[aout]", "-f", "null", "-"]
    if info.has_video:
        outputs += ["-map", "[thumbs]", "-f", "rawvideo", "-pix_fmt", "gray", str(workdir / "thumbs.gray")]
    return ";".join(chains), outputs


def _read_metadata(path: Path) -> list[tuple[float, dict[str, str]]]:
    frames: list[tuple[float, dict[str, str]]] = []
    if not path.exists():
        return frames
    current: dict[str, str] | None = None
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            match = _FRAME_RE.match(line)
            if match:
                try:
                    t = float(match.group(1))
                except ValueError:
                    t = math.nan
                current = {}
                frames.append((t, current))
            elif current is not None and "=" in line:
                key, _, value = line.strip().partition("=")
                current[key] = value
    return [(t, m) for t, m in frames if math.isfinite(t)]


def _float(value: str | None, default: float) -> float:
    try:
        out = float(value) if value is not None else default
    except ValueError:
        return default
    return out if math.isfinite(out) else default


def _spans(starts: list[float], ends: list[float], duration: float) -> list[tuple[float, float]]:
    spans = []
    for i, start in enumerate(starts):
        end = ends[i] if i < len(ends) else duration
        spans.append((round(max(0.0, start), 3), round(min(duration, end), 3)))
    return spans


def _thumb_motion(path: Path, n_windows: int) -> tuple[list[float], list[float]]:
    """Per-window horizontal motion centre (0..1) and energy, from consecutive thumbnails."""
    centre = [0.5] * n_windows
    energy = [0.0] * n_windows
    if not path.exists():
        return centre, energy
    data = path.read_bytes()
    size = THUMB_W * THUMB_H
    count = len(data) // size
    sums: list[list[float]] = [[0.0] * THUMB_W for _ in range(n_windows)]
    for i in range(1, count):
        prev = data[(i - 1) * size : i * size]
        cur = data[i * size : (i + 1) * size]
        w = min(n_windows - 1, int((i / THUMB_FPS) / WINDOW_S))
        cols = sums[w]
        for j in range(size):
            cols[j % THUMB_W] += abs(cur[j] - prev[j])
    for w, cols in enumerate(sums):
        total = sum(cols)
        if total > 0:
            centre[w] = sum((x + 0.5) / THUMB_W * v for x, v in enumerate(cols)) / total
            energy[w] = total
    return centre, energy


def _carry_forward(values: list[float | None], default: float) -> list[float]:
    out: list[float] = []
    last = default
    for v in values:
        if v is not None:
            last = v
        out.append(last)
    return out


def parse_outputs(workdir: Path, stderr: str, info: MediaInfo) -> Analysis:
    """Aggregate the raw filter outputs into an :class:`Analysis`."""
    duration = info.duration
    n = max(1, math.ceil(duration / WINDOW_S))
    loud_acc: list[list[float]] = [[] for _ in range(n)]
    motion_acc: list[list[float]] = [[] for _ in range(n)]
    scene = [0.0] * n
    cuts: list[float] = []
    b_start: list[float] = []
    b_end: list[float] = []
    video_frames = _read_metadata(workdir / "video.txt")
    for t, meta in video_frames:
        w = min(n - 1, max(0, int(t / WINDOW_S)))
        score = _float(meta.get("lavfi.scd.score"), 0.0)
        motion_acc[w].append(_float(meta.get("lavfi.scd.mafd"), 0.0))
        scene[w] = max(scene[w], score)
        if score >= SCENE_THRESHOLD and t > 0.0:
            cuts.append(round(t, 3))
        if "lavfi.black_start" in meta:
            b_start.append(_float(meta["lavfi.black_start"], t))
        if "lavfi.black_end" in meta:
            b_end.append(_float(meta["lavfi.black_end"], t))
    s_start: list[float] = []
    s_end: list[float] = []
    for t, meta in _read_metadata(workdir / "audio.txt"):
        w = min(n - 1, max(0, int(t / WINDOW_S)))
        momentary = _float(meta.get("lavfi.r128.M"), FLOOR_LUFS)
        loud_acc[w].append(max(FLOOR_LUFS, momentary))
        if "lavfi.silence_start" in meta:
            s_start.append(_float(meta["lavfi.silence_start"], t))
        if "lavfi.silence_end" in meta:
            s_end.append(_float(meta["lavfi.silence_end"], t))
    # blackdetect/silencedetect also log to stderr; use it when the metadata missed an edge.
    if not b_start:
        for m in _BLACK_RE.finditer(stderr):
            b_start.append(float(m.group(1)))
            b_end.append(float(m.group(2)))
    if not s_start:
        s_start = [float(m.group(1)) for m in _SIL_START_RE.finditer(stderr)]
        s_end = [float(m.group(1)) for m in _SIL_END_RE.finditer(stderr)]
    integrated: float | None = None
    found = _INTEGRATED_RE.findall(stderr)  # the last summary is the real one
    if found and found[-1] != "-inf":
        integrated = float(found[-1])
    loudness = _carry_forward([sum(v) / len(v) if v else None for v in loud_acc], FLOOR_LUFS)
    motion = _carry_forward([sum(v) / len(v) if v else None for v in motion_acc], 0.0)
    motion_x, _ = _thumb_motion(workdir / "thumbs.gray", n)
    result = Analysis(
        duration=duration,
        window_s=WINDOW_S,
        has_audio=info.has_audio,
        has_video=info.has_video,
        loudness=[round(v, 2) for v in loudness],
        motion=[round(v, 3) for v in motion],
        scene=[round(v, 3) for v in scene],
        motion_x=[round(v, 3) for v in motion_x],
        scene_cuts=cuts,
        silences=_spans(s_start, s_end, duration),
        blacks=_spans(b_start, b_end, duration),
        integrated_lufs=integrated,
    )
    if info.has_video:
        times = [t for t, _ in video_frames]
        step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
        _clip_to_decoded(result, times[-1] + step if times else 0.0, info)
    return result


def _clip_to_decoded(result: Analysis, decoded_until: float, info: MediaInfo) -> None:
    """Use only what decodes: a truncated file (or a video stream shorter than its container) is cut there."""
    if decoded_until < min(1.0, info.duration / 2):
        raise MediaError(
            f"Input {str(info.path)!r}: no usable video could be decoded (decoded {decoded_until:.2f} s of "
            f"{info.duration:.2f} s); the file is damaged or truncated."
        )
    if decoded_until >= info.duration - max(1.0, 0.05 * info.duration):
        return
    n = max(1, math.ceil(decoded_until / WINDOW_S))
    result.declared_duration = result.duration
    result.duration = round(decoded_until, 3)
    for name in ("loudness", "motion", "scene", "motion_x"):
        setattr(result, name, getattr(result, name)[:n])
    result.scene_cuts = [t for t in result.scene_cuts if t < decoded_until]
    result.silences = [(s, min(e, decoded_until)) for s, e in result.silences if s < decoded_until]
    result.blacks = [(s, min(e, decoded_until)) for s, e in result.blacks if s < decoded_until]


def cache_path(cache_dir: Path, sha256: str, tools: FFmpegTools) -> Path:
    key = f"{sha256}-v{ANALYSIS_VERSION}-{tools.ffmpeg_version}"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", key)
    return cache_dir / f"analysis-{safe}.json"


def analyse(
    info: MediaInfo,
    tools: FFmpegTools,
    *,
    sha256: str,
    cache_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> Analysis:
    """Analyse ``info.path`` in one decode, or return the cached result for the same content."""
    cached = cache_path(cache_dir, sha256, tools) if cache_dir is not None else None
    if cached is not None and cached.is_file():
        try:
            result = Analysis.from_json(json.loads(cached.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            cached.unlink(missing_ok=True)  # a corrupt cache entry is recomputed, not trusted
        else:
            if progress:
                progress(1.0)
            return result
    # A temp dir with a name Montage chooses: the metadata file paths go into the filter string.
    workdir = Path(tempfile.mkdtemp(prefix="montage-analysis-"))
    try:
        graph, outputs = build_graph(info, workdir)
        args = ["-noautorotate", "-threads", str(tools.threads), "-i", "file:" + str(info.path)]
        args += ["-filter_complex", graph, *outputs]
        run = run_ffmpeg(tools, args, what=f"analysis of {info.path}", total_s=info.duration, progress=progress)
        result = parse_outputs(workdir, run.stderr, info)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.source_sha256 = sha256
    if cached is not None:
        atomic_write_text(cached, json.dumps(result.to_json()))
    return result
