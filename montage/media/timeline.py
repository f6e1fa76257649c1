"""Timeline export: the edit plan as a CMX 3600 EDL and as OpenTimelineIO, for Resolve and Premiere.

Both files describe the cut list: one event per segment, source in/out and record in/out at the
plan's frame rate, frame-accurate.  Crossfades and fades are rendered into the MP4; in the timeline
files they are recorded as metadata (OTIO) / comments (EDL) so an editor can re-apply them.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from montage.core.files import atomic_write_text
from montage.media.plan import EditPlan


def _timecode(frame: int, nominal: int) -> str:
    ff = frame % nominal
    seconds = frame // nominal
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{ff:02d}"


def frame_ranges(plan: EditPlan) -> list[tuple[int, int, int, int]]:
    """(source in, source out, record in, record out) in frames, out exclusive, per segment."""
    fps = Fraction(plan.render.fps)
    out = []
    record = 0
    for seg in plan.segments:
        src_in = round(seg.start * fps)
        src_out = round(seg.end * fps)
        length = src_out - src_in
        out.append((src_in, src_out, record, record + length))
        record += length
    return out


def to_edl(plan: EditPlan, title: str) -> str:
    fps = Fraction(plan.render.fps)
    nominal = round(fps)
    lines = [f"TITLE: {title}", "FCM: NON-DROP FRAME", ""]
    for n, (seg, (si, so, ri, ro)) in enumerate(zip(plan.segments, frame_ranges(plan), strict=True), start=1):
        reel = f"AX{seg.source:02d}"[:8]
        lines.append(
            f"{n:03d}  {reel:<8} V     C        {_timecode(si, nominal)} {_timecode(so, nominal)} "
            f"{_timecode(ri, nominal)} {_timecode(ro, nominal)}"
        )
        lines.append(f"* FROM CLIP NAME: {Path(plan.sources[seg.source].path).name}")
        lines.append(f"* MONTAGE ROLE: {seg.role.upper()}")
        lines.append("")
    return "\n".join(lines)


def to_otio(plan: EditPlan, title: str) -> object:
    import opentimelineio as otio

    rate = float(Fraction(plan.render.fps))
    timeline = otio.schema.Timeline(name=title)
    timeline.metadata["montage"] = {
        "plan_version": plan.version,
        "selector": plan.selector.name,
        "crossfade_s": plan.effects.crossfade,
        "fade_in_s": plan.effects.fade_in,
        "fade_out_s": plan.effects.fade_out,
        "aspect": plan.render.aspect,
    }
    tracks = [otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)]
    if any(s.has_audio for s in plan.sources):
        tracks.append(otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio))
    for seg, (si, so, _, _) in zip(plan.segments, frame_ranges(plan), strict=True):
        src = plan.sources[seg.source]
        for track in tracks:
            ref = otio.schema.ExternalReference(
                target_url=Path(src.path).absolute().as_uri(),  # plans may hold relative paths
                available_range=otio.opentime.TimeRange(
                    otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(round(src.duration * rate), rate)
                ),
            )
            clip = otio.schema.Clip(
                name=Path(src.path).name,
                media_reference=ref,
                source_range=otio.opentime.TimeRange(
                    otio.opentime.RationalTime(si, rate), otio.opentime.RationalTime(so - si, rate)
                ),
            )
            clip.metadata["montage"] = {"role": seg.role, "score": seg.score, "source_sha256": src.sha256}
            track.append(clip)
    timeline.tracks.extend(tracks)
    return timeline


def export_timelines(plan: EditPlan, base: Path) -> dict[str, Path]:
    """Write ``base.edl`` and ``base.otio``; returns {"edl": path, "otio": path}."""
    import opentimelineio as otio

    title = base.name or "montage"
    edl = base.with_name(base.name + ".edl")
    otio_path = base.with_name(base.name + ".otio")
    atomic_write_text(edl, to_edl(plan, title))
    atomic_write_text(otio_path, otio.adapters.write_to_string(to_otio(plan, title), "otio_json"))
    return {"edl": edl, "otio": otio_path}
