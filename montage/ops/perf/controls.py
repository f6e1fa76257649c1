"""Real changes to a tree's product code that the perf guard must catch (or must not flag).

Each control edits a checked-out tree (a throwaway worktree, never this one) at one anchor that must
occur exactly once, so a control that no longer applies is an error, not a silent no-op. They are
the perf guard's negative controls (``phase.selftest``) and the conditions of
``scripts/calibrate_perf.py``; the size of each is what calibration on this machine measured
(README, "Perf guard calibration").

* ``cpu-filter``: a lanczos rescale up and back down in the render graph (same picture, about +17 % of
  the render stage's CPU): ffmpeg CPU. (It was a box blur, which costs little here: a blurred picture also
  encodes faster.)
* ``cpu-python``: the render path burns CPU in Python before it starts ffmpeg.
* ``rss``: the render graph buffers every frame (``reverse``): ffmpeg's peak RSS grows, CPU barely.
* ``analysis-2x``: the one-decode analysis decodes twice: the plan stage's analysis costs double.
* ``improvement``: the render encodes with x264 ``ultrafast``: faster (must never FAIL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from montage.errors import UsageError

RENDER = Path("montage/media/render.py")
ANALYSIS = Path("montage/media/analysis.py")
_FADES = "        video, audio = _fades(plan, video, audio)\n"
_RENDER_BODY = (
    '    """The single encode: every segment, effects, the loudness normalisation -> ``output`` (atomic)."""\n'
)
_ANALYSIS_RUN = (
    '        run = run_ffmpeg(tools, args, what=f"analysis of {info.path}", total_s=info.duration, progress=progress)\n'
)
_PRESET = '            "preset": plan.render.preset,\n'

# Sizes (calibrated on the reference workload, see the module docstring).
RESCALE = 4  # up 4x and back: +14-24 % (median +17 %) of the render stage's CPU, 4 interleaved pairs at load 5
PYTHON_CPU_S = 0.5


@dataclass(frozen=True)
class Control:
    name: str
    description: str
    regression: bool  # the guard must FAIL (True) or must not FAIL (False)
    apply: Callable[[Path], str]


def _edit(tree: Path, rel: Path, anchor: str, replacement: str) -> None:
    path = tree / rel
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if text.count(anchor) != 1:
        raise UsageError(
            f"{path}: the perf control expected exactly one {anchor.strip()!r} to patch, found {text.count(anchor)}; "
            "update montage/ops/perf/controls.py to the code."
        )
    path.write_text(text.replace(anchor, replacement), encoding="utf-8")


def _cpu_filter(tree: Path) -> str:
    up, down = (f"iw*{RESCALE}", f"ih*{RESCALE}"), (f"iw/{RESCALE}", f"ih/{RESCALE}")
    rescale = (
        f'        video = video.filter("scale", "{up[0]}", "{up[1]}", flags="lanczos")'
        f'.filter("scale", "{down[0]}", "{down[1]}", flags="lanczos")\n'
    )
    _edit(tree, RENDER, _FADES, _FADES + rescale)
    return f"{RENDER}: a lanczos rescale {RESCALE}x up and back down in the render graph"


def _cpu_python(tree: Path) -> str:
    burn = (
        "    _t0 = __import__('time').process_time()\n"
        f"    while __import__('time').process_time() - _t0 < {PYTHON_CPU_S}:\n"
        "        pass\n"
    )
    _edit(tree, RENDER, _RENDER_BODY, _RENDER_BODY + burn)
    return f"{RENDER}: {PYTHON_CPU_S} s of Python CPU before the encode"


def _rss(tree: Path) -> str:
    _edit(tree, RENDER, _FADES, _FADES + '        video = video.filter("reverse")\n')
    return f"{RENDER}: the render graph buffers every frame (reverse)"


def _analysis_2x(tree: Path) -> str:
    _edit(tree, ANALYSIS, _ANALYSIS_RUN, _ANALYSIS_RUN + _ANALYSIS_RUN)
    return f"{ANALYSIS}: the analysis pass decodes twice"


def _improvement(tree: Path) -> str:
    _edit(tree, RENDER, _PRESET, '            "preset": "ultrafast",\n')
    return f"{RENDER}: x264 preset ultrafast"


CONTROLS: dict[str, Control] = {
    c.name: c
    for c in (
        Control("cpu-filter", "CPU in the render's filter graph", True, _cpu_filter),
        Control("cpu-python", "CPU in Python on the render path", True, _cpu_python),
        Control("rss", "ffmpeg peak RSS in the render", True, _rss),
        Control("analysis-2x", "analysis twice as slow (plan stage)", True, _analysis_2x),
        Control("improvement", "a faster render", False, _improvement),
    )
}
# The perf_guard kind's default negative controls (phase.selftest): a CPU and an RSS regression.
DEFAULT = ("cpu-filter", "rss")


def apply(tree: Path, name: str) -> str:
    """Apply control ``name`` to ``tree``; return what it changed."""
    if name not in CONTROLS:
        raise UsageError(f"unknown perf control {name!r}; expected one of {', '.join(CONTROLS)}.")
    return CONTROLS[name].apply(tree)
