"""The reference workload: a reproducible input clip and the render command each tree runs.

The *clip* is built by the running code (it is the same input for both sides of an A/B run).
The *work* is described by ``montage/ops/perf/workload.json`` inside each tree, read as a file
(never imported), so a candidate tree that renders differently is measured as it really is.

A workload is a list of *stages*, each one process measured on its own (CPU seconds by ``wait4``):

* ``main-job`` (the default): the whole main job in two processes. ``plan``: ``montage run CLIP
  --plan-only`` with an empty analysis cache, i.e. probe, the one-decode analysis (cold) and the
  selection; ``render``: ``montage run --from-plan`` of the plan the ``plan`` stage just wrote
  (loudness measurement, the encode, the loudness check). Probe and selection are not separate
  processes: each would add a Python start-up (about 0.4 s CPU) to every run and cost pairs within
  the guard's 90 s; their share of the ``plan`` stage is in ``montage run --json``'s timings.
* ``montage-run``: one ``render`` stage, ``montage run --from-plan`` of a committed plan (the
  workload before issue 14; kept so that an A/B against an older commit can say what differs).
* ``ffmpeg``: one ``render`` stage, a plain ffmpeg command (tests).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from montage.core import ffmpeg as core_ffmpeg
from montage.core import proc as core_proc
from montage.core.files import atomic_write_text, sha256_file
from montage.errors import MediaError, ToolMissing, UsageError

WORKLOAD_FILE = Path("montage/ops/perf/workload.json")
KINDS = ("ffmpeg", "montage-run", "main-job")

# The reference clip: 8 s of 640x360 at 30 fps (240 frames) with temporal noise (so the encoder
# has real work) and a beeping sine. Bit-exact flags and a fixed thread count make the bytes
# reproducible for a given ffmpeg build; the sha256 goes into the environment fingerprint.
CLIP_SECONDS = 8
CLIP_FPS = 30
CLIP_SIZE = "640x360"
CLIP_FRAMES = CLIP_SECONDS * CLIP_FPS
CLIP_TIMEOUT_S = 300.0


def clip_argv(ffmpeg: str, out: Path) -> list[str]:
    """The ffmpeg command that builds the reference clip at ``out``."""
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={CLIP_SIZE}:rate={CLIP_FPS}:duration={CLIP_SECONDS}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:beep_factor=4:sample_rate=48000:duration={CLIP_SECONDS}",
        "-filter_complex",
        "[0:v]noise=alls=8:allf=t+u,format=yuv420p[v]",
        "-map",
        "[v]",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        "-g",
        "60",
        "-threads",
        "2",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ac",
        "2",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        str(out),
    ]


def find_ffmpeg() -> str:
    """The ffmpeg binary that renders (:func:`montage.core.ffmpeg.locate`: the same one ``montage run``
    and the bundle fingerprint use), as a real path."""
    return os.path.realpath(core_ffmpeg.locate().ffmpeg)


def find_ffprobe(ffmpeg: str) -> str:
    """ffprobe from the same build as ``ffmpeg`` (configured, or next to it)."""
    probe = core_ffmpeg.locate(ffmpeg).ffprobe
    if probe is None:
        raise ToolMissing(
            f"ffprobe was not found next to {ffmpeg}; the perf guard counts output frames with it.",
            hint="Install it with: apt-get install ffmpeg (or set MONTAGE_MEDIA__FFPROBE).",
        )
    return probe


@dataclass(frozen=True)
class Clip:
    """The reference input: where it is, its hash and how many frames it has."""

    path: Path
    sha256: str
    frames: int
    argv: list[str]


def run_checked(argv: list[str], *, timeout: float, what: str) -> str:
    """Run ``argv``; return stdout; a non-zero exit or a timeout is a MediaError carrying the stderr tail."""
    done = core_proc.run(argv, timeout_s=timeout)
    if done.timed_out:
        raise MediaError(f"{what} timed out after {timeout:.0f} s: {' '.join(argv[:3])} ...")
    if done.returncode != 0:
        tail = done.tail(8)
        raise MediaError(f"{what} failed with exit {done.returncode}: {tail}", stderr_tail=tail)
    return done.stdout


def count_frames(ffprobe: str, path: Path, *, timeout: float = 60.0) -> int:
    """Video frames in ``path`` (packets of the first video stream, counted by reading the file)."""
    out = run_checked(
        [
            ffprobe,
            "-v",
            "error",
            "-count_packets",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
            str(path),
        ],
        timeout=timeout,
        what=f"counting frames of {path}",
    )
    text = out.strip().split(",")[0] if out.strip() else ""
    if not text.isdigit():
        raise MediaError(f"{path}: ffprobe reported no video frame count (got {out.strip()!r}).")
    return int(text)


def ensure_clip(directory: Path, ffmpeg: str) -> Clip:
    """Build the reference clip in ``directory`` unless an identical build is already there."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "reference.mp4"
    meta_path = directory / "reference.json"
    argv = clip_argv(ffmpeg, path)
    recipe = [Path(a).name if a == ffmpeg else a for a in argv[1:-1]]
    if path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            meta = {}
        if meta.get("recipe") == recipe and meta.get("ffmpeg") == ffmpeg and meta.get("size") == path.stat().st_size:
            return Clip(path=path, sha256=str(meta["sha256"]), frames=int(meta["frames"]), argv=argv)
    tmp = directory / ".reference.tmp.mp4"
    try:
        run_checked(clip_argv(ffmpeg, tmp), timeout=CLIP_TIMEOUT_S, what="building the reference clip")
        frames = count_frames(find_ffprobe(ffmpeg), tmp)
        if frames != CLIP_FRAMES:
            raise MediaError(f"the reference clip has {frames} frames, expected {CLIP_FRAMES}.")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    digest = sha256_file(path)
    meta = {"recipe": recipe, "ffmpeg": ffmpeg, "size": path.stat().st_size, "sha256": digest, "frames": frames}
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return Clip(path=path, sha256=digest, frames=frames, argv=argv)


@dataclass(frozen=True)
class Stage:
    """One measured process of a workload run."""

    name: str
    argv: list[str]
    env: dict[str, str]
    output: Path  # the file the stage must produce
    expected_frames: int  # render: frames counted in the output; plan: the source frames it processed
    frame_tolerance: int = 0
    count_output: bool = True  # count the output's frames with ffprobe (a render) or check it is a plan
    rss_process: str = "ffmpeg"  # the process whose peak RSS the stage reports


@dataclass(frozen=True)
class Workload:
    """One tree's render workload, read from its ``montage/ops/perf/workload.json``."""

    tree: Path
    spec: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.spec["kind"])

    @property
    def expected_frames(self) -> int:
        return int(self.spec["expected_frames"])

    @property
    def frame_tolerance(self) -> int:
        return int(self.spec.get("frame_tolerance", 0))

    @property
    def threads(self) -> int:
        return int(self.spec["threads"])

    @property
    def stage_names(self) -> list[str]:
        return ["plan", "render"] if self.kind == "main-job" else ["render"]

    @property
    def duration(self) -> float:
        return float(self.spec["duration"])

    def stages(self, *, ffmpeg: str, python: str, clip: Clip, scratch: Path, name: str) -> list[Stage]:
        """The processes of one run with this tree's code; files go to ``scratch`` prefixed by ``name``."""
        out = scratch / f"out-{name}.mp4"
        plan = scratch / f"plan-{name}.json"
        if self.kind != "main-job":
            if self.kind == "montage-run":
                self.materialise_plan(clip, plan)
            argv, env = self.command(ffmpeg=ffmpeg, python=python, clip=clip, out=out, plan=plan)
            return [Stage("render", argv, env, out, self.expected_frames, self.frame_tolerance)]
        env = {
            "MONTAGE_MEDIA__FFMPEG": ffmpeg,
            "MONTAGE_MEDIA__THREADS": str(self.threads),
            "PYTHONPATH": str(self.tree),
            # a fresh, empty analysis cache for every run: the analysis is measured cold
            "MONTAGE_MEDIA__CACHE_DIR": str(scratch / f"cache-{name}"),
        }
        plan_argv = [python, "-m", "montage", "run", str(clip.path), "-o", str(plan), "--plan-only"]
        plan_argv += ["--duration", repr(self.duration)]
        render_argv = [python, "-m", "montage", "run", "-o", str(out), "--from-plan", str(plan)]
        return [
            Stage("plan", plan_argv, env, plan, clip.frames, count_output=False),
            Stage("render", render_argv, env, out, self.expected_frames, self.frame_tolerance),
        ]

    @property
    def plan_template(self) -> Path:
        return self.tree / str(self.spec["plan"])

    def materialise_plan(self, clip: Clip, target: Path) -> Path:
        """This tree's committed plan with its source pointed at the reference clip (path and hash)."""
        try:
            plan = json.loads(self.plan_template.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{self.plan_template}: the perf reference plan is unreadable ({exc}).") from None
        sources = plan.get("sources") if isinstance(plan, dict) else None
        if not isinstance(sources, list) or len(sources) != 1 or not isinstance(sources[0], dict):
            raise UsageError(f"{self.plan_template}: expected exactly one entry in 'sources' (the reference clip).")
        sources[0].update(path=str(clip.path), sha256=clip.sha256)
        atomic_write_text(target, json.dumps(plan, indent=2) + "\n")
        return target

    def command(
        self, *, ffmpeg: str, python: str, clip: Clip, out: Path, plan: Path | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and extra environment that render ``clip`` to ``out`` with this tree's code.

        ``montage-run``: ``plan`` is where the materialised plan is (or will be) written.
        """
        threads = str(self.threads)
        env = {"MONTAGE_MEDIA__FFMPEG": ffmpeg, "MONTAGE_MEDIA__THREADS": threads}
        if self.kind == "montage-run":
            plan = plan or out.with_suffix(".plan.json")
            argv = [python, "-m", "montage", "run", "-o", str(out), "--from-plan", str(plan)]
            env["PYTHONPATH"] = str(self.tree)
            return argv, env
        return self._ffmpeg_argv(ffmpeg, clip.path, out, threads), env

    def _ffmpeg_argv(self, ffmpeg: str, clip: Path, out: Path, threads: str) -> list[str]:
        segments = self.spec["segments"]
        parts: list[str] = []
        labels: list[str] = []
        for i, (start, end) in enumerate(segments):
            parts.append(f"[0:v]trim=start={float(start)}:end={float(end)},setpts=PTS-STARTPTS[v{i}]")
            parts.append(f"[0:a]atrim=start={float(start)}:end={float(end)},asetpts=PTS-STARTPTS[a{i}]")
            labels.append(f"[v{i}][a{i}]")
        width, height = int(self.spec["width"]), int(self.spec["height"])
        parts.append(f"{''.join(labels)}concat=n={len(segments)}:v=1:a=1[cv][ca]")
        parts.append(f"[cv]scale={width}:{height},format=yuv420p[v]")
        return [
            ffmpeg,
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-threads",
            threads,
            "-i",
            str(clip),
            "-filter_complex_threads",
            "1",
            "-filter_complex",
            ";".join(parts),
            "-map",
            "[v]",
            "-map",
            "[ca]",
            "-c:v",
            "libx264",
            "-preset",
            str(self.spec["preset"]),
            "-crf",
            str(int(self.spec["crf"])),
            "-threads",
            threads,
            "-c:a",
            "aac",
            "-b:a",
            str(self.spec["audio_bitrate"]),
            "-movflags",
            "+faststart",
            str(out),
        ]

    def command_template(self) -> list[str]:
        """The command with machine-specific paths replaced by placeholders (for the fingerprint)."""
        clip = Clip(path=Path("{clip}"), sha256="", frames=0, argv=[])
        if self.kind == "main-job":
            stages = self.stages(ffmpeg="{ffmpeg}", python="{python}", clip=clip, scratch=Path("{work}"), name="x")
            hidden = ("PYTHONPATH", "MONTAGE_MEDIA__CACHE_DIR")
            shown_env = [f"{k}={v}" for k, v in sorted(stages[0].env.items()) if k not in hidden]
            return [" ".join(s.argv) for s in stages] + shown_env
        argv, env = self.command(
            ffmpeg="{ffmpeg}", python="{python}", clip=clip, out=Path("{out}"), plan=Path("{plan}")
        )
        shown = argv + [f"{k}={v}" for k, v in sorted(env.items()) if k != "PYTHONPATH"]
        if self.kind == "montage-run":
            # The plan's content is part of the workload: a changed render setting is another command.
            shown.append(
                f"plan-sha256={sha256_file(self.plan_template) if self.plan_template.is_file() else 'missing'}"
            )
        return shown


def load_workload(tree: Path) -> Workload:
    """Read and validate ``tree``'s workload file."""
    path = tree / WORKLOAD_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no perf workload file; expected {WORKLOAD_FILE} in the tree.") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg}).") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{path}: expected a JSON object.")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise UsageError(f"{path}: field 'kind' is {kind!r}; expected one of {', '.join(KINDS)}.")
    required = ["threads", "expected_frames"] + {
        "montage-run": ["plan"],
        "main-job": ["duration"],
        "ffmpeg": ["segments", "width", "height", "preset", "crf", "audio_bitrate"],
    }[kind]
    missing = [name for name in required if name not in spec]
    if missing:
        raise UsageError(f"{path}: missing field(s) {', '.join(missing)} for kind {kind!r}.")
    if not isinstance(spec["expected_frames"], int) or spec["expected_frames"] < 1:
        raise UsageError(f"{path}: field 'expected_frames' is {spec['expected_frames']!r}; expected a positive int.")
    return Workload(tree=tree.resolve(), spec=spec)
