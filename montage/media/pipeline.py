"""The highlight pipeline behind ``montage run``: probe -> analyse -> select -> plan -> render -> verify -> export.

Each stage is a small function taking the previous stage's result; :func:`run` chains them and
reports progress per stage through a :class:`StageReporter`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from montage.errors import MediaError, UsageError
from montage.media.analysis import Analysis, analyse
from montage.media.ffmpeg import FFmpegTools
from montage.media.plan import Caption, EditPlan, Effects, Loudness, PlanSegment, PlanSource, RenderSettings, Selector
from montage.media.render import (
    Verification,
    has_output_audio,
    measure_loudness,
    output_size,
    render,
    require_caption_font,
    verify_loudness,
)
from montage.media.rover import Word, load_and_fuse
from montage.media.story_beats import Selection, select
from montage.media.video_processor import MediaInfo, file_sha256, probe

MIN_TARGET_S = 1.0
MIN_SEGMENT_FRAMES = 12
MAX_TARGET_S = 6 * 3600.0
STANDARD_FPS = [Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(50)]
STANDARD_FPS += [Fraction(60000, 1001), Fraction(60)]
BROADCAST_LUFS = -23.0

StageCallback = Callable[[str, float], None]
"""Called with (stage name, fraction done of that stage)."""


@dataclass
class RunOptions:
    inputs: list[Path]
    output: Path
    duration: float = 30.0
    aspect: str = "16:9"
    transcripts: list[Path] = field(default_factory=list)
    loudness: float | None = None
    plan_only: bool = False
    from_plan: Path | None = None
    framing: str = "motion"
    crossfade: float = 0.0
    captions: bool = False
    cache_dir: Path | None = None
    preset: str = "veryfast"
    crf: int = 23
    true_peak: float = -1.5
    llm: Any = None  # montage.settings.LlmSettings, or None for the scorer only


@dataclass
class RunReport:
    output: Path | None
    plan_path: Path
    plan: EditPlan
    timelines: dict[str, Path] = field(default_factory=dict)
    verification: Verification | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tools: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "output": str(self.output) if self.output else None,
            "plan": str(self.plan_path),
            "timelines": {k: str(v) for k, v in self.timelines.items()},
            "duration": round(self.plan.duration, 3),
            "target_duration": self.plan.target_duration,
            "segments": len(self.plan.segments),
            "aspect": self.plan.render.aspect,
            "size": f"{self.plan.render.width}x{self.plan.render.height}",
            "selector": self.plan.selector.model_dump(),
            "loudness": None
            if self.verification is None
            else {
                "verdict": self.verification.verdict,
                "target_lufs": self.verification.target_lufs,
                "measured_lufs": self.verification.measured_lufs,
                "reason": self.verification.reason,
            },
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "notes": self.notes,
            "tools": self.tools,
        }


class StageReporter:
    """Times stages and forwards progress to a callback."""

    def __init__(self, callback: StageCallback | None) -> None:
        self.callback = callback
        self.timings: dict[str, float] = {}
        self._stage = ""
        self._started = 0.0

    def start(self, stage: str) -> Callable[[float], None]:
        self._stage, self._started = stage, time.monotonic()
        self.report(0.0)
        return self.report

    def report(self, fraction: float) -> None:
        if self.callback is not None:
            self.callback(self._stage, fraction)

    def done(self) -> None:
        self.report(1.0)
        self.timings[self._stage] = self.timings.get(self._stage, 0.0) + time.monotonic() - self._started


def check_target(duration: float) -> float:
    if not math.isfinite(duration) or not MIN_TARGET_S <= duration <= MAX_TARGET_S:
        raise UsageError(
            f"--duration {duration!r} is out of range; expected seconds between {MIN_TARGET_S:g} and "
            f"{MAX_TARGET_S:g} (e.g. --duration 30)."
        )
    return duration


def output_fps(info: MediaInfo) -> Fraction:
    """A standard frame rate close to the source's average (30 when the source's is unusable)."""
    fps = info.video[0].fps
    if not fps or not 1 <= float(fps) <= 240:
        return Fraction(30)
    best = min(STANDARD_FPS, key=lambda f: abs(float(f) - float(fps)))
    if abs(float(best) - float(fps)) / float(fps) < 0.02:
        return best
    return Fraction(30) if float(fps) < 45 else Fraction(60)


def probe_inputs(paths: list[Path], tools: FFmpegTools) -> list[MediaInfo]:
    infos = []
    for path in paths:
        info = probe(path, tools)
        if not info.has_video:
            raise MediaError(
                f"Input {str(path)!r} has no video stream (audio only: {info.audio[0].layout}, "
                f"{info.audio[0].sample_rate} Hz); a montage needs video footage."
            )
        infos.append(info)
    return infos


def _quantise(t: float, fps: Fraction) -> float:
    return round(round(t * float(fps)) / float(fps), 6)


def _crop_x(analysis: Analysis, start: float, end: float) -> float:
    if not analysis.motion_x:
        return 0.5
    first = int(start / analysis.window_s)
    last = max(first + 1, int(end / analysis.window_s))
    values = analysis.motion_x[first:last] or [0.5]
    return round(min(1.0, max(0.0, sorted(values)[len(values) // 2])), 3)


def captions_for(selections: list[PlanSegment], words: list[Word], crossfade: float) -> list[Caption]:
    """Transcript words of source 0 mapped onto the montage timeline, a few words per caption."""
    captions: list[Caption] = []
    offset = 0.0
    for seg in selections:
        if seg.source == 0:
            chunk: list[Word] = []
            for w in words:
                if w.start >= seg.start and w.end <= seg.end:
                    chunk.append(w)
                    if len(chunk) == 6 or w.text.endswith((".", "!", "?")):
                        captions.append(_caption(chunk, seg.start, offset))
                        chunk = []
            if chunk:
                captions.append(_caption(chunk, seg.start, offset))
        offset += seg.duration - crossfade
    return captions


def _caption(chunk: list[Word], seg_start: float, offset: float) -> Caption:
    start = round(offset + chunk[0].start - seg_start, 3)
    end = round(max(start + 0.3, offset + chunk[-1].end - seg_start), 3)
    return Caption(start=start, end=end, text=" ".join(w.text for w in chunk))


def _fit_frames(segments: list[PlanSegment], target: float, fps: Fraction, limits: list[float]) -> None:
    """Grow or shrink segments by whole frames so the total lands on the target (rounding, crossfades).

    The difference is shared out in rounds, so no single segment absorbs it all.
    """
    frame = 1 / float(fps)
    diff = round(target / frame) - round(sum(s.duration for s in segments) / frame)
    if diff == 0 or not segments or sum(limits) <= target:
        return
    share = max(1, math.ceil(abs(diff) / len(segments)))
    progress = True
    while diff and progress:
        progress = False
        for seg in sorted(segments, key=lambda s: -s.duration):
            if diff > 0:
                nxt = min(
                    [o.start for o in segments if o is not seg and o.source == seg.source and o.start >= seg.end]
                    + [limits[seg.source]]
                )
                step = min(diff, share, int((nxt - seg.end) / frame + 1e-6))
            else:
                step = -min(-diff, share, max(0, round(seg.duration / frame) - MIN_SEGMENT_FRAMES))
            if step:
                seg.end = _quantise(seg.end + step * frame, fps)
                diff -= step
                progress = True
            if diff == 0:
                return


def build_plan(
    options: RunOptions,
    infos: list[MediaInfo],
    hashes: list[str],
    analyses: list[Analysis],
    words: list[Word],
    tools: FFmpegTools,
    selections: list[Selection],
    selector: Selector,
) -> EditPlan:
    first = infos[0].video[0]
    fps = output_fps(infos[0])
    width, height = output_size(options.aspect, first.display_width, first.display_height)
    segments = []
    for sel in selections:
        start = _quantise(sel.start, fps)
        end = min(_quantise(sel.end, fps), analyses[sel.source].duration)
        if end - start < 1 / float(fps):
            continue
        segments.append(
            PlanSegment(
                source=sel.source,
                start=start,
                end=end,
                role=sel.role,
                score=sel.score,
                reason=sel.reason,
                crop_x=_crop_x(analyses[sel.source], start, end),
            )
        )
    if not segments:
        raise MediaError(f"Nothing in {', '.join(str(i.path) for i in infos)} is long enough to cut a montage from.")
    # A crossfade longer than half the shortest segment would swallow it: shorten the crossfade.
    crossfade = round(min(options.crossfade, min(s.duration for s in segments) / 2), 3)
    limits = [a.duration for a in analyses]  # what decodes, which may be less than the container says
    _fit_frames(segments, options.duration + crossfade * (len(segments) - 1), fps, limits)
    crossfade = round(min(crossfade, min(s.duration for s in segments) / 2), 3)
    target_lufs = options.loudness if options.loudness is not None else -16.0
    effects = Effects(framing=options.framing, crossfade=crossfade)
    if options.captions and words:
        effects.captions = captions_for(segments, words, crossfade)
    return EditPlan(
        target_duration=options.duration,
        sources=[
            PlanSource(path=str(i.path.resolve()), sha256=h, duration=i.duration, has_audio=i.has_audio)
            for i, h in zip(infos, hashes, strict=True)
        ],
        segments=segments,
        effects=effects,
        render=RenderSettings(
            aspect=options.aspect,
            width=width,
            height=height,
            fps=f"{fps.numerator}/{fps.denominator}",
            preset=options.preset,
            crf=options.crf,
            loudness=Loudness(integrated=target_lufs, true_peak=options.true_peak),
        ),
        selector=selector,
        tools={k: v for k, v in tools.fingerprint().items()},
    )


def plan_montage(
    options: RunOptions, tools: FFmpegTools, stages: StageReporter
) -> tuple[EditPlan, list[MediaInfo], list[Analysis]]:
    """Probe, analyse and select: the edit plan for ``options.inputs``."""
    check_target(options.duration)
    stages.start("probe")
    infos = probe_inputs(options.inputs, tools)
    hashes = [file_sha256(i.path) for i in infos]
    stages.done()
    analyses = []
    for info, digest in zip(infos, hashes, strict=True):
        report = stages.start("analyse")
        analyses.append(analyse(info, tools, sha256=digest, cache_dir=options.cache_dir, progress=report))
        stages.done()
    stages.start("select")
    words = load_and_fuse(options.transcripts) if options.transcripts else []
    selections, candidates = select(analyses, options.duration, [words])
    selector = Selector()
    if options.llm is not None and getattr(options.llm, "provider", "none") != "none":
        from montage.media.llm import choose_with_llm

        selections, selector = choose_with_llm(options.llm, candidates, selections, options.duration, words)
    plan = build_plan(options, infos, hashes, analyses, words, tools, selections, selector)
    stages.done()
    return plan, infos, analyses


def sources_for_plan(plan: EditPlan, tools: FFmpegTools, plan_path: Path) -> list[MediaInfo]:
    """Probe the plan's sources and check they still have the content the plan was made from."""
    infos = []
    for i, src in enumerate(plan.sources):
        info = probe(Path(src.path), tools)
        digest = file_sha256(info.path)
        if digest != src.sha256:
            raise UsageError(
                f"{plan_path}: sources[{i}] {src.path!r} has changed since the plan was made (sha256 {digest[:12]}..., "
                f"plan says {src.sha256[:12]}...); re-run without --from-plan to plan again."
            )
        if not info.has_video:
            raise MediaError(f"Plan source {src.path!r} has no video stream.")
        infos.append(info)
    return infos


def render_plan(
    plan: EditPlan, infos: list[MediaInfo], tools: FFmpegTools, output: Path, stages: StageReporter
) -> Verification | None:
    """Measure loudness, render, verify: the montage at ``output``."""
    if plan.effects.captions:
        require_caption_font()
    normalisation = None
    if has_output_audio(plan):
        report = stages.start("measure")
        normalisation = measure_loudness(plan, infos, tools, report)
        stages.done()
    report = stages.start("render")
    render(plan, infos, tools, output, normalisation=normalisation, progress=report)
    stages.done()
    if not has_output_audio(plan):
        return None
    stages.start("verify")
    verification = verify_loudness(tools, output, plan.render.loudness.integrated)
    stages.done()
    return verification


def sidecar(output: Path, suffix: str) -> Path:
    return output.with_name(output.stem + suffix)


def planned_outputs(options: RunOptions) -> tuple[Path, list[Path]]:
    """The plan's path and every file the run writes (checked by :func:`check_outputs` before any work)."""
    if options.from_plan is not None:
        plan_path = options.from_plan
    elif options.plan_only and options.output.suffix == ".json":
        plan_path = options.output
    else:
        plan_path = sidecar(options.output, ".plan.json")
    if options.plan_only:
        return plan_path, [plan_path]
    timelines = [sidecar(options.output, ".edl"), sidecar(options.output, ".otio")]  # as export_timelines names them
    plan_written = [] if options.from_plan is not None else [plan_path]
    return plan_path, [options.output, *plan_written, *timelines]


def run(options: RunOptions, tools: FFmpegTools, progress: StageCallback | None = None) -> RunReport:
    """The whole job; see the module docstring."""
    from montage.core.files import atomic_write_text
    from montage.media.outputs import check_outputs
    from montage.media.plan import load_plan
    from montage.media.timeline import export_timelines

    stages = StageReporter(progress)
    notes: list[str] = []
    plan_path, written = planned_outputs(options)
    reads = [*options.inputs, *options.transcripts]
    if options.from_plan is not None:
        plan = load_plan(options.from_plan)
        reads += [options.from_plan, *(Path(src.path) for src in plan.sources)]
    check_outputs("-o", options.output, written, reads)
    if options.from_plan is not None:
        infos = sources_for_plan(plan, tools, options.from_plan)
    else:
        plan, infos, analyses = plan_montage(options, tools, stages)
        atomic_write_text(plan_path, plan.dump())
        for info, analysis in zip(infos, analyses, strict=True):
            if analysis.declared_duration is not None:
                notes.append(
                    f"{info.path} decodes only to {analysis.duration:.1f} s of its declared "
                    f"{analysis.declared_duration:.1f} s (truncated?); used the part that decodes"
                )
        available = sum(a.duration for a in analyses)
        if available < options.duration:
            notes.append(f"input is {available:.1f} s, shorter than the {options.duration:g} s target: used all of it")
    if plan.selector.fallback_reason:
        notes.append(f"LLM selector not used: {plan.selector.fallback_reason}")
    if options.plan_only:
        return RunReport(None, plan_path, plan, timings=stages.timings, notes=notes, tools=tools.fingerprint())
    verification = render_plan(plan, infos, tools, options.output, stages)
    stages.start("export")
    timelines = export_timelines(plan, sidecar(options.output, ""))
    stages.done()
    return RunReport(
        output=options.output,
        plan_path=plan_path,
        plan=plan,
        timelines=timelines,
        verification=verification,
        timings=stages.timings,
        notes=notes,
        tools=tools.fingerprint(),
    )
