"""Edit plan validation and the EDL / OTIO exports read back through OpenTimelineIO."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio
import pytest

from montage.errors import ExitCode, ValidationFailure
from montage.media.plan import EditPlan, load_plan
from montage.media.timeline import export_timelines, frame_ranges

SHA = "a" * 64


def _plan(tmp_path: Path, **extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "version": 1,
        "target_duration": 6.0,
        "sources": [{"path": str(tmp_path / "clip one.mp4"), "sha256": SHA, "duration": 60.0, "has_audio": True}],
        "segments": [
            {"source": 0, "start": 10.0, "end": 12.5, "role": "hook"},
            {"source": 0, "start": 2.0, "end": 3.5, "role": "build"},
            {"source": 0, "start": 30.0, "end": 32.0, "role": "resolution"},
        ],
        "render": {"width": 1280, "height": 720, "fps": "30/1"},
    }
    data.update(extra)
    return data


def test_plan_round_trip(tmp_path: Path) -> None:
    plan = EditPlan.model_validate(_plan(tmp_path))
    path = tmp_path / "p.json"
    path.write_text(plan.dump())
    assert load_plan(path) == plan and plan.duration == 6.0


def test_plan_with_the_old_lra_target_reads_and_is_written_without_it(tmp_path: Path) -> None:
    """Plans written while loudnorm normalised carry ``render.loudness.lra``: they still load; it is not written."""
    raw = _plan(tmp_path, render={"width": 1280, "height": 720, "fps": "30/1", "loudness": {"lra": 7.0}})
    path = tmp_path / "old.json"
    path.write_text(json.dumps(raw))
    plan = load_plan(path)
    assert plan.render.loudness.integrated == -16.0
    assert "lra" not in json.loads(plan.dump())["render"]["loudness"]
    raw["render"]["loudness"] = {"lra": 7.0, "surprise": 1}  # type: ignore[index]
    path.write_text(json.dumps(raw))
    with pytest.raises(ValidationFailure, match="surprise"):  # only lra is forgiven
        load_plan(path)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(version=2), "version 2 is not supported"),
        (lambda d: d["segments"].append({"source": 1, "start": 0, "end": 1}), "has 1 source"),
        (lambda d: d["segments"].append({"source": 0, "start": 5, "end": 4}), "must be after its start"),
        (lambda d: d["segments"].append({"source": 0, "start": 59, "end": 61}), "beyond the source"),
        (lambda d: d.update(render={"width": 1281, "height": 720, "fps": "30/1"}), "must be even"),
        (lambda d: d.update(surprise=True), "surprise"),
        (lambda d: d.update(effects={"crossfade": 1.0}), "longer than half the shortest segment"),
    ],
)
def test_bad_plans(tmp_path: Path, mutate: object, needle: str) -> None:
    data = _plan(tmp_path)
    mutate(data)  # type: ignore[operator]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValidationFailure) as info:
        load_plan(path)
    assert needle in str(info.value) and str(path) in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE


def test_unreadable_plans(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailure, match="does not exist"):
        load_plan(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{oops")
    with pytest.raises(ValidationFailure, match=r"x.json:1:2: not valid JSON"):
        load_plan(tmp_path / "x.json")


def test_edl_and_otio_read_back_frame_accurately(tmp_path: Path) -> None:
    plan = EditPlan.model_validate(_plan(tmp_path))
    files = export_timelines(plan, tmp_path / "montage")
    expected = frame_ranges(plan)
    assert [(si, so) for si, so, _, _ in expected] == [(300, 375), (60, 105), (900, 960)]
    edl = otio.adapters.read_from_file(str(files["edl"]), rate=30)
    timeline = otio.adapters.read_from_file(str(files["otio"]))
    for tl in (edl, timeline):
        clips = list(tl.video_tracks()[0].find_clips())
        got = [
            (round(c.source_range.start_time.to_frames()), round(c.source_range.end_time_exclusive().to_frames()))
            for c in clips
        ]
        assert got == [(si, so) for si, so, _, _ in expected]
        records = [round(tl.video_tracks()[0].range_of_child_at_index(i).start_time.to_frames()) for i in range(3)]
        assert records == [ri for _, _, ri, _ in expected]
    assert timeline.tracks[1].kind == otio.schema.TrackKind.Audio
    assert timeline.metadata["montage"]["selector"] == "scorer"
    assert "clip one.mp4" in files["edl"].read_text()


def _edl_events(text: str, fps: Fraction) -> list[tuple[int, int, int, int, str]]:
    """A plain CMX 3600 parse (written here, not OTIO's): (src in, src out, rec in, rec out, channels) in frames."""
    nominal = round(fps)
    drop = "FCM: DROP FRAME" in text

    def frames(tc: str) -> int:
        hh, mm, ss, ff = (int(x) for x in tc.replace(";", ":").split(":"))
        total_min = hh * 60 + mm
        n = (total_min * 60 + ss) * nominal + ff
        if drop:  # drop-frame: frame numbers 0-1 skipped each minute but every tenth
            assert ";" in tc, tc
            n -= (nominal // 15) * (total_min - total_min // 10)
        return n

    events = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 8 and parts[0].isdigit():
            events.append((frames(parts[4]), frames(parts[5]), frames(parts[6]), frames(parts[7]), parts[2]))
    return events


def _xml_clipitems(path: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """A plain parse of the FCP7 XML: per track kind, (in, out, start, end) of every clipitem, and the rate."""
    import xml.etree.ElementTree as ET

    sequence = ET.parse(path).getroot().find("./project/children/sequence")
    assert sequence is not None
    found: dict[str, list[tuple[int, int, int, int]]] = {}
    for kind in ("video", "audio"):
        items = sequence.findall(f"./media/{kind}/track/clipitem")
        found[kind] = [
            (int(c.findtext("in", "")), int(c.findtext("out", "")), int(c.findtext("start", "")),
             int(c.findtext("end", ""))) for c in items
        ]  # fmt: skip
    rate = sequence.find("./rate")
    assert rate is not None
    found["rate"] = [(int(rate.findtext("timebase", "")), int(rate.findtext("ntsc", "FALSE").upper() == "TRUE"), 0, 0)]
    return found


@pytest.mark.parametrize(("fps", "timebase", "ntsc", "drop"), [
    ("30000/1001", 30, 1, True), ("24000/1001", 24, 1, False), ("25/1", 25, 0, False),
])  # fmt: skip
def test_editor_formats_cut_frame_accurately(fps: str, timebase: int, ntsc: int, drop: bool, tmp_path: Path) -> None:
    """EDL (drop-frame at 29.97), FCP7 XML and OTIO: read back through OTIO and by a plain parse, cuts = the plan's."""
    raw = _plan(tmp_path, render={"width": 1280, "height": 720, "fps": fps})
    # long enough past 10 minutes that drop-frame counting matters (a minute boundary and a tenth minute)
    raw["sources"] = [{"path": str(tmp_path / "clip one.mp4"), "sha256": SHA, "duration": 900.0, "has_audio": True}]
    raw["segments"] = [
        {"source": 0, "start": 10.0, "end": 12.5, "role": "hook"},
        {"source": 0, "start": 61.5, "end": 63.0, "role": "build"},
        {"source": 0, "start": 605.2, "end": 607.0, "role": "climax"},
        {"source": 0, "start": 700.0, "end": 702.0, "role": "resolution"},
    ]
    plan = EditPlan.model_validate(raw)
    rate = Fraction(fps)
    # The plan's cuts in frames, computed here from the segment times.
    src = [(round(s.start * rate), round(s.end * rate)) for s in plan.segments]
    rec, t = [], 0
    for a, b in src:
        rec.append((t, t + b - a))
        t += b - a
    files = export_timelines(plan, tmp_path / "montage")
    assert set(files) == {"edl", "xml", "otio"}

    edl_text = files["edl"].read_text()
    assert ("FCM: DROP FRAME" in edl_text) is drop
    events = _edl_events(edl_text, rate)
    assert [(e[0], e[1]) for e in events] == src and [(e[2], e[3]) for e in events] == rec
    assert {e[4] for e in events} == {"AA/V"}

    items = _xml_clipitems(files["xml"])
    assert items["rate"][0][:2] == (timebase, ntsc)
    for kind in ("video", "audio"):
        assert [(i[0], i[1]) for i in items[kind]] == src, kind
        assert [(i[2], i[3]) for i in items[kind]] == rec, kind

    readers = {
        "edl": otio.adapters.read_from_file(str(files["edl"]), rate=float(rate)),
        "xml": otio.adapters.read_from_file(str(files["xml"])),
        "otio": otio.adapters.read_from_file(str(files["otio"])),
    }
    for name, tl in readers.items():
        for track in [tl.video_tracks()[0], tl.audio_tracks()[0]]:
            clips = list(track.find_clips())
            got = [
                (round(c.source_range.start_time.to_frames()), round(c.source_range.end_time_exclusive().to_frames()))
                for c in clips
            ]
            assert got == src, (name, track.kind)
            starts = [round(track.range_of_child(c).start_time.to_frames()) for c in clips]
            assert starts == [r[0] for r in rec], (name, track.kind)
