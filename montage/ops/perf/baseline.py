"""perf_baseline.json: capture (only by an explicit command), load and validate.

Top-level ``fps`` is the median CPU-time fps (frames / (user + sys) seconds) and ``rss_mb`` the
maximum ffmpeg peak RSS in MiB of the ``render`` stage, as the roadmap names them (``stages`` has
every stage's summary); everything else (wall fps, the Python
parent's peak, the environment fingerprint, raw samples, summary statistics) sits beside them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from montage.core.files import atomic_write_text
from montage.errors import ValidationFailure
from montage.ops.perf.measure import RunSample
from montage.ops.perf.runner import Runner, make_side

SCHEMA_VERSION = 1
DEFAULT_RUNS = 7
BASELINE_FILE = "perf_baseline.json"
METRICS = ("cpu_fps", "wall_fps", "ffmpeg_rss_mb", "parent_rss_mb")


def render_samples(samples: Sequence[RunSample]) -> list[RunSample]:
    """The ``render`` stage's samples (the top-level figures are theirs)."""
    return [s for s in samples if s.stage == "render"]


def summarise(samples: Sequence[RunSample]) -> dict[str, dict[str, float]]:
    """Median, min, max, mean, stdev and coefficient of variation of each metric."""
    out: dict[str, dict[str, float]] = {}
    for metric in METRICS:
        values = [float(getattr(s, metric)) for s in samples]
        mean = statistics.fmean(values)
        stdev = statistics.stdev(values) if len(values) > 1 else 0.0
        out[metric] = {
            "n": len(values),
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "mean": mean,
            "stdev": stdev,
            "cv": stdev / mean if mean else 0.0,
        }
    return out


def capture(
    repo: Path,
    *,
    workdir: Path,
    runs: int = DEFAULT_RUNS,
    progress: Callable[[str], None] = print,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Measure ``repo``'s working tree (one warm-up, then ``runs`` runs) and build the baseline document."""
    if runs < 3:
        raise ValidationFailure(f"--runs is {runs}; a baseline needs at least 3 measured runs.")
    started = time.monotonic()
    runner = runner or Runner.prepare(workdir)
    side = make_side("baseline", repo)
    progress(f"perf baseline: warm-up run of {side.tree} ({side.workload.kind})")
    warm = runner.run(side, warmup=True)
    samples: list[RunSample] = []
    for i in range(runs):
        run = runner.run(side)
        samples.extend(run)
        shown = "; ".join(
            f"{s.stage} {s.cpu_fps:.1f} fps (CPU time), {s.wall_fps:.1f} fps (wall), "
            f"ffmpeg peak {s.ffmpeg_rss_mb:.1f} MiB"
            for s in run
        )
        progress(f"perf baseline: run {i + 1}/{runs}: {shown}")
    summary = summarise(render_samples(samples))
    return {
        "schema": SCHEMA_VERSION,
        "fps": summary["cpu_fps"]["median"],
        "rss_mb": summary["ffmpeg_rss_mb"]["max"],
        "fps_definition": "median over measured runs of frames / (user + sys CPU seconds of the render process tree)",
        "rss_definition": "maximum over measured runs of the ffmpeg processes' peak RSS (VmHWM), MiB",
        "wall_fps": summary["wall_fps"]["median"],
        "parent_rss_mb": summary["parent_rss_mb"]["max"],
        "frames": side.workload.expected_frames,
        "captured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 3),
        "commit": side.commit,
        "dirty": side.dirty,
        "workload": side.workload.spec,
        "fingerprint": runner.fingerprint(side),
        "summary": summary,
        "stages": {stage: summarise([s for s in samples if s.stage == stage]) for stage in side.workload.stage_names},
        "warmup": [s.to_dict() for s in warm],
        "samples": [s.to_dict() for s in samples],
    }


def write_baseline(path: Path, data: dict[str, Any]) -> None:
    validate(data, str(path))
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _positive(data: dict[str, Any], name: str, where: str) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValidationFailure(f"field {name!r} is {value!r}; expected a positive number.", path=where)
    return float(value)


def validate(data: Any, where: str) -> list[RunSample]:
    """Check a baseline document; return its samples. Errors name the file and field."""
    if not isinstance(data, dict):
        raise ValidationFailure("expected a JSON object.", path=where)
    if data.get("schema") != SCHEMA_VERSION:
        raise ValidationFailure(f"field 'schema' is {data.get('schema')!r}; expected {SCHEMA_VERSION}.", path=where)
    for name in ("fps", "rss_mb", "wall_fps", "parent_rss_mb"):
        _positive(data, name, where)
    for name in ("fingerprint", "summary", "workload"):
        if not isinstance(data.get(name), dict):
            raise ValidationFailure(f"field {name!r} is missing or not an object.", path=where)
    if not isinstance(data.get("commit"), str):
        raise ValidationFailure(
            "field 'commit' is missing; expected the commit the baseline was measured at.", path=where
        )
    raw = data.get("samples")
    if (
        not isinstance(raw, list)
        or sum(1 for s in raw if isinstance(s, dict) and s.get("stage", "render") == "render") < 3
    ):
        raise ValidationFailure("field 'samples' must list at least 3 measured runs of the render stage.", path=where)
    samples: list[RunSample] = []
    for i, item in enumerate(raw):
        try:
            sample = RunSample.from_dict(item)
        except (TypeError, KeyError) as exc:
            raise ValidationFailure(f"samples[{i}] is malformed ({exc}).", path=where) from None
        for name in ("frames", "cpu_fps", "wall_fps", "ffmpeg_rss_mb", "user_s", "wall_s"):
            _positive(item, name, f"{where} samples[{i}]")
        samples.append(sample)
    fps = statistics.median(s.cpu_fps for s in render_samples(samples))
    rss = max(s.ffmpeg_rss_mb for s in render_samples(samples))
    if not math.isclose(fps, data["fps"], rel_tol=1e-9) or not math.isclose(rss, data["rss_mb"], rel_tol=1e-9):
        raise ValidationFailure(
            f"top-level fps/rss_mb ({data['fps']}, {data['rss_mb']}) do not match the raw samples "
            f"(median fps {fps}, max rss {rss}); the file was edited by hand.",
            path=where,
        )
    return samples


def load(path: Path) -> tuple[dict[str, Any], list[RunSample]]:
    """Read and validate a baseline file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationFailure(
            "no perf baseline; capture one with `nox -s perf -- --update-baseline` "
            "(or `python -m montage.ops.perf baseline`).",
            path=str(path),
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailure(
            f"invalid JSON ({exc.msg}).", path=str(path), line=exc.lineno, column=exc.colno
        ) from None
    return data, validate(data, str(path))
