"""The reference workload: a reproducible input clip and the render command each tree runs.

The *clip* is built by the running code (it is the same input for both sides of an A/B run).
The *render* is described by ``montage/ops/perf/workload.json`` inside each tree, read as a file
(never imported), so a candidate tree that renders differently is measured as it really is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from montage.core.files import atomic_write_text
from montage.errors import MediaError, ToolMissing, UsageError

WORKLOAD_FILE = Path("montage/ops/perf/workload.json")
KINDS = ("ffmpeg", "montage-run")

# The reference clip: 12 s of 960x540 at 30 fps (360 frames) with temporal noise (so the encoder
# has real work) and a beeping sine. Bit-exact flags and a fixed thread count make the bytes
# reproducible for a given ffmpeg build; the sha256 goes into the environment fingerprint.
CLIP_SECONDS = 12
CLIP_FPS = 30
CLIP_SIZE = "960x540"
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
    """The ffmpeg binary: ``MONTAGE_MEDIA__FFMPEG`` if set, else the one on PATH."""
    name = os.environ.get("MONTAGE_MEDIA__FFMPEG") or "ffmpeg"
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(
            f"ffmpeg ({name!r}) was not found; the perf guard renders with it.",
            hint="Install it with: apt-get install ffmpeg (or set MONTAGE_MEDIA__FFMPEG).",
        )
    return os.path.realpath(path)


def find_ffprobe(ffmpeg: str) -> str:
    """ffprobe next to ``ffmpeg``, else on PATH."""
    sibling = Path(ffmpeg).with_name("ffprobe")
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    path = shutil.which(os.environ.get("MONTAGE_MEDIA__FFPROBE") or "ffprobe")
    if path is None:
        raise ToolMissing(
            "ffprobe was not found; the perf guard counts output frames with it.",
            hint="Install it with: apt-get install ffmpeg.",
        )
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Clip:
    """The reference input: where it is, its hash and how many frames it has."""

    path: Path
    sha256: str
    frames: int
    argv: list[str]


def run_checked(argv: list[str], *, timeout: float, what: str) -> str:
    """Run ``argv``; return stdout; a non-zero exit is a MediaError carrying the stderr tail."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise MediaError(f"{what} timed out after {timeout:.0f} s: {' '.join(argv[:3])} ...") from None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if proc.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-8:])
        raise MediaError(f"{what} failed with exit {proc.returncode}: {tail}", stderr_tail=tail)
    return out


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
    required = ["threads", "expected_frames"] + (
        ["plan"] if kind == "montage-run" else ["segments", "width", "height", "preset", "crf", "audio_bitrate"]
    )
    missing = [name for name in required if name not in spec]
    if missing:
        raise UsageError(f"{path}: missing field(s) {', '.join(missing)} for kind {kind!r}.")
    if not isinstance(spec["expected_frames"], int) or spec["expected_frames"] < 1:
        raise UsageError(f"{path}: field 'expected_frames' is {spec['expected_frames']!r}; expected a positive int.")
    return Workload(tree=tree.resolve(), spec=spec)
