"""How a worker renders one job: an argv for a child process, and how to read its outcome.

Kept behind this small interface so that running across several machines can later hand jobs to an
existing distributed job engine instead of this process-local worker.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from montage.core import ffmpeg as core_ffmpeg
from montage.errors import MediaError

if TYPE_CHECKING:
    from montage.settings import Settings


@dataclass(frozen=True)
class JobSpec:
    """What to render and where: the executor writes ``output_tmp``; the worker renames it."""

    job_id: str
    input_path: Path
    duration_s: float
    aspect: str
    output_tmp: Path
    plan_path: Path


class Executor(Protocol):
    name: str

    def argv(self, spec: JobSpec) -> list[str]:
        """The child process to run (it gets its own process group)."""
        ...

    def collect(self, spec: JobSpec, stdout: str) -> None:
        """After exit 0: check the output and write the plan to ``spec.plan_path``; raise MediaError if wrong."""
        ...


def _write_json(path: Path, data: object) -> None:
    from montage.core.files import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _require_output(spec: JobSpec) -> None:
    if not spec.output_tmp.is_file() or spec.output_tmp.stat().st_size == 0:
        raise MediaError(f"the renderer exited 0 but wrote no output at {spec.output_tmp}")


class MontageRunExecutor:
    """``montage run INPUT -o OUT --duration D --aspect A --json`` (the media pipeline)."""

    name = "montage-run"

    def argv(self, spec: JobSpec) -> list[str]:
        return [
            sys.executable, "-m", "montage", "run", str(spec.input_path), "-o", str(spec.output_tmp),
            "--duration", f"{spec.duration_s:g}", "--aspect", spec.aspect, "--json",
        ]  # fmt: skip

    def collect(self, spec: JobSpec, stdout: str) -> None:
        _require_output(spec)
        try:
            summary = json.loads(stdout)
        except json.JSONDecodeError as exc:
            raise MediaError(f"`montage run --json` printed no JSON summary ({exc.msg})") from None
        plan_ref = summary.get("plan") if isinstance(summary, dict) else None
        if isinstance(plan_ref, str) and Path(plan_ref).is_file():  # the edit plan written next to the output
            # Moved, not copied: a result has one plan (the worker publishes spec.plan_path).
            os.replace(plan_ref, spec.plan_path)
        elif isinstance(plan_ref, dict):
            _write_json(spec.plan_path, plan_ref)
        else:
            raise MediaError(f"`montage run --json` named no readable edit plan (plan={plan_ref!r})")


class FfmpegTrimExecutor:
    """A plain ffmpeg render: the first ``duration`` seconds, scaled or cropped to the aspect.

    Not a highlight montage: a demo and a test double with real ffmpeg behaviour (real process,
    real output), for the worker machinery.  Its plan says exactly what it did.
    """

    name = "ffmpeg-trim"

    def __init__(self, ffmpeg: str | None = None, *, realtime: bool = False, threads: int = 2) -> None:
        # The one locator: configured, PATH, else imageio-ffmpeg's bundled binary (as `montage run` does).
        self.ffmpeg = core_ffmpeg.locate(ffmpeg, environ={}).ffmpeg
        self.realtime = realtime
        self.threads = threads

    def argv(self, spec: JobSpec) -> list[str]:
        if spec.aspect == "9:16":
            vf = "crop=trunc(ih*9/16/2)*2:ih,scale=360:640,setsar=1"
        else:
            vf = "scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2,setsar=1"
        return [
            self.ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
            *(["-re"] if self.realtime else []),
            "-i", str(spec.input_path), "-t", f"{spec.duration_s:g}", "-vf", vf,
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-threads", str(self.threads),
            "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", "-f", "mp4", str(spec.output_tmp),
        ]  # fmt: skip

    def collect(self, spec: JobSpec, stdout: str) -> None:
        _require_output(spec)
        _write_json(
            spec.plan_path,
            {
                "executor": self.name,
                "input": spec.input_path.name,
                "aspect": spec.aspect,
                "segments": [{"start": 0.0, "end": spec.duration_s}],
            },  # fmt: skip
        )


def executor_from_settings(settings: Settings) -> Executor:
    if settings.service.executor == "ffmpeg-trim":
        return FfmpegTrimExecutor(
            settings.media.ffmpeg, realtime=settings.service.executor_realtime, threads=settings.media.threads
        )
    return MontageRunExecutor()
