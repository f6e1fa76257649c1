"""Measure one render: frames, CPU seconds of the work, wall seconds, peak RSS, load average.

How each figure is taken, and why:

* **CPU seconds**: ``os.wait4`` on the child returns its rusage *including every descendant it
  waited for* (the ffmpeg processes a ``montage run`` starts), and nothing of this process.
* **Peak RSS of ffmpeg**: ``VmHWM`` of every process in the child's session, read from
  ``/proc/PID/status`` every few milliseconds while the child runs. VmHWM is the high-water mark of
  the process's own address space after ``exec``, so it does not inherit the size of the Python
  process that forked it. ``RUSAGE_CHILDREN``'s ``ru_maxrss`` does (and it is a running maximum over
  all children ever waited for), so it is never used. A run in which no ffmpeg process was seen is
  an error, never a zero.
* **Frames**: counted in the output file by ffprobe and checked against the expected count. A stage
  that writes a plan rather than a video (``count_output=False``) reports the frames of the source
  it processed, so its "fps" is the source's frames per CPU second; its output must be a JSON plan
  with segments.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from montage.core import proc as core_proc
from montage.errors import MediaError

SAMPLE_INTERVAL_S = 0.01


@dataclass(frozen=True)
class RunSample:
    """The figures of one measured run."""

    side: str
    tree: str
    commit: str
    frames: int
    expected_frames: int
    user_s: float
    sys_s: float
    wall_s: float
    cpu_fps: float
    wall_fps: float
    ffmpeg_rss_mb: float
    ffmpeg_processes: int
    parent_rss_mb: float
    parent_rss_source: str
    rss_polls: int
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]
    started_at: str
    warmup: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    stage: str = "render"  # the workload stage this process was (reports before issue 14: render only)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSample:
        values = dict(data)
        values["loadavg_before"] = tuple(values["loadavg_before"])
        values["loadavg_after"] = tuple(values["loadavg_after"])
        return cls(**values)


@dataclass
class _Proc:
    comm: str
    hwm_kib: int = 0


def _session_members(sid: int) -> dict[int, str]:
    """pid -> command name of every live process whose session id is ``sid``."""
    members: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue  # exited between listing and reading
        close = raw.rfind(b")")
        fields = raw[close + 2 :].split()
        # after "pid (comm)": state ppid pgrp session ...
        if len(fields) > 3 and int(fields[3]) == sid:
            members[int(entry.name)] = raw[raw.find(b"(") + 1 : close].decode("utf-8", "replace")
    return members


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0  # a zombie has no VmHWM line


def _poll(sid: int, seen: dict[int, _Proc]) -> None:
    for pid, comm in _session_members(sid).items():
        proc = seen.setdefault(pid, _Proc(comm=comm))
        proc.comm = comm
        proc.hwm_kib = max(proc.hwm_kib, _vm_hwm_kib(pid))


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def run_once(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    output: Path,
    ffprobe: str,
    expected_frames: int,
    frame_tolerance: int = 0,
    side: str = "candidate",
    commit: str = "",
    timeout: float = 120.0,
    warmup: bool = False,
    stage: str = "render",
    count_output: bool = True,
    rss_process: str = "ffmpeg",
) -> RunSample:
    """Run ``argv`` once as a new session and measure it (see the module docstring)."""
    from montage.ops.perf.workload import count_frames

    output.unlink(missing_ok=True)
    load_before = os.getloadavg()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    seen: dict[int, _Proc] = {}
    polls = 0
    with tempfile.TemporaryFile(mode="w+b") as err_file:
        t0 = time.monotonic()
        # Started by core (own session, ToolMissing for a missing program); waited for with wait4 here,
        # because only wait4 returns the rusage of the whole tree.
        proc = core_proc.spawn(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err_file)
        rusage: resource.struct_rusage | None = None
        try:
            deadline = t0 + timeout
            while True:
                _poll(proc.pid, seen)
                polls += 1
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    wall = time.monotonic() - t0
                    rusage = ru
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    raise MediaError(
                        f"the perf workload did not finish within {timeout:.0f} s: {' '.join(argv[:6])} ..."
                    )
                time.sleep(SAMPLE_INTERVAL_S)
        finally:
            if proc.returncode is None:
                core_proc.kill_group(proc)
                _, status, _ = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            else:
                core_proc.kill_group(proc)  # descendants that outlived the root (should not happen) must not leak
        err_file.seek(0)
        stderr_tail = "\n".join(err_file.read().decode("utf-8", "replace").strip().splitlines()[-12:])
    load_after = os.getloadavg()
    if proc.returncode != 0:
        raise MediaError(
            f"the perf workload exited with {proc.returncode} (in {cwd}): {' '.join(argv[:6])} ...\n{stderr_tail}",
            stderr_tail=stderr_tail,
        )
    assert rusage is not None
    frames = count_frames(ffprobe, output) if count_output else _plan_frames(output, expected_frames)
    if abs(frames - expected_frames) > frame_tolerance:
        raise MediaError(
            f"{output}: the render produced {frames} frames, expected {expected_frames} "
            f"(tolerance {frame_tolerance}); the workload and its expected count disagree."
        )
    cpu = rusage.ru_utime + rusage.ru_stime
    ffmpegs = [p for p in seen.values() if p.comm == rss_process and p.hwm_kib > 0]
    if not ffmpegs or cpu <= 0 or wall <= 0:
        raise MediaError(
            f"the perf workload's {stage} stage finished but could not be measured "
            f"({rss_process} processes seen: {len(ffmpegs)}, "
            f"cpu {cpu:.3f} s, wall {wall:.3f} s, polls {polls}); refusing to report empty figures."
        )
    root = seen.get(proc.pid)
    if root is not None and root.comm != "ffmpeg" and root.hwm_kib > 0:
        parent_rss, parent_source = root.hwm_kib / 1024.0, f"VmHWM of the workload's root process ({root.comm})"
    else:
        # ffmpeg is the root itself: the Python parent is this harness.
        parent_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        parent_source = "ru_maxrss of the measuring Python process (RUSAGE_SELF)"
    return RunSample(
        side=side,
        tree=str(cwd),
        commit=commit,
        frames=frames,
        expected_frames=expected_frames,
        user_s=rusage.ru_utime,
        sys_s=rusage.ru_stime,
        wall_s=wall,
        cpu_fps=frames / cpu,
        wall_fps=frames / wall,
        ffmpeg_rss_mb=max(p.hwm_kib for p in ffmpegs) / 1024.0,
        ffmpeg_processes=len(ffmpegs),
        parent_rss_mb=parent_rss,
        parent_rss_source=parent_source,
        rss_polls=polls,
        loadavg_before=load_before,
        loadavg_after=load_after,
        started_at=started_at,
        warmup=warmup,
        stage=stage,
    )


def _plan_frames(path: Path, source_frames: int) -> int:
    """A plan stage's figure: the source frames it analysed, once its output is a plan with segments."""
    import json

    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MediaError(f"{path}: the plan stage wrote no readable plan ({exc}).") from None
    if not isinstance(plan, dict) or not plan.get("segments"):
        raise MediaError(f"{path}: the plan stage wrote a plan without segments.")
    return source_frames
