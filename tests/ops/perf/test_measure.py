"""Measurement on real ffmpeg: figures are never zero or empty, even for sub-second renders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from montage.errors import MediaError
from montage.ops.perf.measure import run_once
from montage.ops.perf.runner import Runner, Side, make_side
from montage.ops.perf.workload import Clip, Workload, load_workload

from .conftest import TINY_WORKLOAD


def _side(tree: Path) -> Side:
    return Side(name="candidate", tree=tree, commit="", dirty=False, workload=Workload(tree=tree, spec=TINY_WORKLOAD))


def test_sub_second_render_has_real_figures(tiny_runner: Runner, tmp_path: Path) -> None:
    (sample,) = tiny_runner.run(_side(tmp_path))
    assert sample.frames == sample.expected_frames == 35
    assert sample.wall_s < 5  # generous: it is a sub-second render on an idle machine
    assert sample.user_s + sample.sys_s > 0
    assert sample.cpu_fps > 0 and sample.wall_fps > 0
    assert sample.ffmpeg_processes == 1
    # ffmpeg with libx264 maps tens of MiB; a figure of 0 (the old script's defect) or the parent's size are wrong
    assert 5 < sample.ffmpeg_rss_mb < 1000
    assert sample.parent_rss_mb > 5
    assert sample.rss_polls >= 1
    assert len(sample.loadavg_before) == 3


def test_ffmpeg_peak_does_not_inherit_the_parents_size(tiny_runner: Runner, tmp_path: Path) -> None:
    ballast = b"\x01" * (300 * 1024 * 1024)  # make this Python process 300 MiB resident
    try:
        (sample,) = tiny_runner.run(_side(tmp_path))
    finally:
        del ballast
    assert sample.parent_rss_mb > 300  # the harness really was big
    assert sample.ffmpeg_rss_mb < 250  # RUSAGE_CHILDREN / ru_maxrss after fork+exec would report >= 300


def test_python_driver_tree_counts_ffmpeg_cpu_and_parent_peak(
    ffmpeg_tools: tuple[str, str], tiny_runner: Runner, tmp_path: Path
) -> None:
    """The `montage run` shape: a Python process that starts ffmpeg; its CPU and its peak are separate."""
    ffmpeg, ffprobe = ffmpeg_tools
    out = tmp_path / "out.mp4"
    script = "import subprocess, sys\nsubprocess.run(sys.argv[1:], check=True, timeout=60)\n"
    argv = [sys.executable, "-c", script]
    render = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(tiny_runner.clip.path), "-t", "1",
              "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(out)]  # fmt: skip
    sample = run_once(
        argv + render, env={}, cwd=tmp_path, output=out, ffprobe=ffprobe, expected_frames=25, frame_tolerance=1
    )
    assert sample.ffmpeg_processes == 1
    assert "VmHWM of the workload's root process (python" in sample.parent_rss_source
    assert sample.parent_rss_mb > 3
    assert sample.ffmpeg_rss_mb > 5
    # wait4's rusage includes the ffmpeg grandchild the Python driver waited for
    assert sample.user_s + sample.sys_s > 0.05


def test_wrong_frame_count_is_an_error(tiny_runner: Runner, tmp_path: Path) -> None:
    side = _side(tmp_path)
    wrong = Side(side.name, side.tree, "", False, Workload(tree=tmp_path, spec=TINY_WORKLOAD | {"expected_frames": 99}))
    with pytest.raises(MediaError, match="produced 35 frames, expected 99"):
        tiny_runner.run(wrong)


def test_failing_render_reports_stderr_tail(tiny_runner: Runner, tmp_path: Path) -> None:
    bad = Side("candidate", tmp_path, "", False, Workload(tree=tmp_path, spec=TINY_WORKLOAD | {"preset": "nosuch"}))
    with pytest.raises(MediaError, match="exited with") as info:
        tiny_runner.run(bad)
    assert info.value.stderr_tail


def test_timeout_kills_the_whole_session(ffmpeg_tools: tuple[str, str], tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import subprocess; subprocess.run(['sleep', '30'])"]
    with pytest.raises(MediaError, match="did not finish within 1 s"):
        run_once(
            argv, env={}, cwd=tmp_path, output=tmp_path / "o.mp4", ffprobe=ffmpeg_tools[1], expected_frames=1, timeout=1
        )


def test_no_ffmpeg_seen_is_an_error_not_a_zero(ffmpeg_tools: tuple[str, str], tiny_clip: Clip, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    # "renders" by copying a file: nothing ran ffmpeg, so there is no ffmpeg peak to report
    argv = [
        sys.executable,
        "-c",
        "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])",
        str(tiny_clip.path),
        str(out),
    ]
    with pytest.raises(MediaError, match="refusing to report empty figures"):
        run_once(argv, env={}, cwd=tmp_path, output=out, ffprobe=ffmpeg_tools[1], expected_frames=50, frame_tolerance=0)


def test_workload_file_errors_name_the_field(tmp_path: Path) -> None:
    from montage.errors import UsageError

    from .conftest import write_workload

    write_workload(tmp_path, kind="gstreamer")
    with pytest.raises(UsageError, match="field 'kind' is 'gstreamer'"):
        load_workload(tmp_path)
    write_workload(tmp_path, expected_frames=0)
    with pytest.raises(UsageError, match="expected_frames"):
        load_workload(tmp_path)
    with pytest.raises(UsageError, match="no perf workload file"):
        load_workload(tmp_path / "missing")


def test_command_template_hides_machine_paths(tmp_path: Path) -> None:
    from .conftest import write_workload

    write_workload(tmp_path, kind="montage-run", plan="plan.json")
    (tmp_path / "plan.json").write_text('{"render": {"preset": "veryfast"}}', encoding="utf-8")
    workload = load_workload(tmp_path)
    template = workload.command_template()
    assert template[:8] == ["{python}", "-m", "montage", "run", "-o", "{out}", "--from-plan", "{plan}"]
    assert str(tmp_path) not in " ".join(template)
    # the plan's content is part of the command: another render setting is another fingerprint
    (tmp_path / "plan.json").write_text('{"render": {"preset": "faster"}}', encoding="utf-8")
    assert workload.command_template() != template


@pytest.mark.slow
def test_the_committed_workload_runs_the_whole_main_job(ffmpeg_tools: tuple[str, str], tmp_path: Path) -> None:
    """The real workload: plan (probe, cold analysis, selection) then render of that plan, each measured alone."""
    repo = Path(__file__).resolve().parents[3]
    runner = Runner.prepare(tmp_path)
    assert runner.clip.frames == 240
    side = make_side("candidate", repo)
    assert side.workload.kind == "main-job" and side.workload.stage_names == ["plan", "render"]
    plan, render = runner.run(side)
    assert (plan.stage, render.stage) == ("plan", "render")
    assert plan.frames == 240 and render.frames == 90
    assert plan.ffmpeg_processes >= 1  # the one-decode analysis ran: the cache was cold
    assert render.ffmpeg_processes >= 2  # loudness measurement, render, verification
    assert plan.cpu_fps > 0 and render.cpu_fps > 0 and render.ffmpeg_rss_mb > 5
    assert render.parent_rss_source.startswith("VmHWM of the workload's root process")
    # outputs, plan and analysis cache cleaned: the next run's analysis is cold again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference.json", "reference.mp4"]
    again, _ = runner.run(side)
    assert again.ffmpeg_processes >= 1
