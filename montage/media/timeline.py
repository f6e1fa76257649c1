"""Timeline export: the edit plan as a CMX 3600 EDL, Final Cut Pro 7 XML and OpenTimelineIO.

Premiere imports the EDL and the FCP7 XML (not OTIO); Resolve opens all three.  Every file
describes the cut list: one event per segment, source in/out and record in/out at the plan's frame
rate, frame-accurate, with an audio track when the sources have audio.  At 29.97 and 59.94 fps the
EDL uses drop-frame timecode (``FCM: DROP FRAME``, ``;`` before the frames), as NTSC editors expect;
23.976 has no drop-frame form.  The XML is written by OpenTimelineIO's ``fcp_xml`` adapter from the
same timeline as the OTIO file.  Crossfades and fades are rendered into the MP4; in the timeline files
they are recorded as metadata (OTIO) / comments (EDL) so an editor can re-apply them.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from montage.core.files import atomic_write_text
from montage.media.plan import EditPlan


def drop_frame(fps: Fraction) -> bool:
    """29.97 and 59.94 fps count in drop-frame timecode."""
    return fps.denominator == 1001 and round(fps) in {30, 60}


def _timecode(frame: int, nominal: int, drop: bool = False) -> str:
    sep = ":"
    if drop:
        # SMPTE 12M: skip frame numbers 0 and 1 (0-3 at 59.94) each minute, except every tenth minute.
        skip = nominal // 15
        per_min = nominal * 60 - skip
        per_10min = per_min * 10 + skip
        tens, rest = divmod(frame, per_10min)
        frame += skip * 9 * tens + (skip * ((rest - skip) // per_min) if rest >= skip else 0)
        sep = ";"
    ff = frame % nominal
    seconds = frame // nominal
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{sep}{ff:02d}"


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
    drop = drop_frame(fps)
    lines = [f"TITLE: {title}", f"FCM: {'DROP FRAME' if drop else 'NON-DROP FRAME'}", ""]
    for n, (seg, (si, so, ri, ro)) in enumerate(zip(plan.segments, frame_ranges(plan), strict=True), start=1):
        reel = f"AX{seg.source:02d}"[:8]
        lines.append(
            f"{n:03d}  {reel:<8} {'AA/V' if plan.sources[seg.source].has_audio else 'V':<5} C        "
            f"{_timecode(si, nominal, drop)} {_timecode(so, nominal, drop)} "
            f"{_timecode(ri, nominal, drop)} {_timecode(ro, nominal, drop)}"
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
            # The track name keeps the audio clip distinct from its video twin: the fcp_xml adapter
            # otherwise writes the audio clipitems as back-references to the video ones.
            clip.metadata["montage"] = {
                "role": seg.role,
                "score": seg.score,
                "source_sha256": src.sha256,
                "track": track.name,
            }
            track.append(clip)
    timeline.tracks.extend(tracks)
    return timeline


def export_timelines(plan: EditPlan, base: Path) -> dict[str, Path]:
    """Write ``base.edl``, ``base.xml`` (FCP7) and ``base.otio``; returns {"edl": .., "xml": .., "otio": ..}."""
    import opentimelineio as otio

    title = base.name or "montage"
    edl = base.with_name(base.name + ".edl")
    xml = base.with_name(base.name + ".xml")
    otio_path = base.with_name(base.name + ".otio")
    timeline = to_otio(plan, title)
    atomic_write_text(edl, to_edl(plan, title))
    atomic_write_text(xml, otio.adapters.write_to_string(timeline, "fcp_xml"))
    atomic_write_text(otio_path, otio.adapters.write_to_string(timeline, "otio_json"))
    return {"edl": edl, "xml": xml, "otio": otio_path}
