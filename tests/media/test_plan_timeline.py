"""Edit plan validation and the EDL / OTIO exports read back through OpenTimelineIO."""

from __future__ import annotations

import json
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
