"""Key figures of a bundle, one short string per check, from the values its checks measured.

What a reader scans in the overview: ``"695 passed"``, ``"montage.media.pipeline 96.15 %"``,
``"cpu render ratio 0.975 [0.945, 0.990]"``.  Only the manifest's check values are read, so the figures
are exactly what the gate judged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from montage.ops.manifest import CheckResult, Manifest


def _pytest(v: dict[str, Any]) -> str:
    out = f"{v.get('passed')} passed"
    for name in ("failures", "errors", "skipped"):
        if v.get(name):
            out += f", {v[name]} {name}"
    return out


def _pct(value: Any) -> str:
    return "not measured" if value is None else f"{value} %"


def _coverage(v: dict[str, Any]) -> str:
    mods = v.get("modules") or {}
    return "; ".join(f"{name} {_pct(pct)}" for name, pct in mods.items()) + (
        f"; global {v['global']} %" if v.get("global") is not None else ""
    )


def _interval(d: Any) -> str:
    """``point [low, high]`` of an interval dict (point, ratio or rate), else the value itself."""
    if isinstance(d, float):
        return f"{d:.3f}"
    point = next((d[k] for k in ("point", "ratio", "rate") if k in d), None) if isinstance(d, dict) else None
    if not isinstance(point, (int, float)) or not isinstance(d, dict):
        return str(d)
    if "low" not in d or "high" not in d:  # a count with its rate (the canary's job errors): no interval
        return f"{d['errors']} of {d['jobs']} jobs failed" if {"errors", "jobs"} <= d.keys() else f"{point:.3f}"
    return f"{point:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def _perf_guard(v: dict[str, Any]) -> str:
    """Every ratio the guard decided: ``cpu render ratio 1.029 [0.987, 1.190]; rss render ratio ...``.

    Values since issue 14 name one ratio per measure and stage (``cpu_render_ratio``); older ones
    ``fps_ratio`` and ``rss_ratio``. Either way each ``*_ratio`` key is shown, none is assumed."""
    ratios = [(k.removesuffix("_ratio").replace("_", " "), d) for k, d in v.items() if k.endswith("_ratio")]
    if not ratios:
        return "no ratio measured"
    return "; ".join(f"{name} ratio {_interval(d)}" for name, d in ratios)


def _perf_baseline(v: dict[str, Any]) -> str:
    return f"{v.get('fps', 0):.2f} CPU-time fps, {v.get('rss_mb', 0):.1f} MiB rss ({v.get('runs')} runs)"


def _canary(v: dict[str, Any]) -> str:
    slos = v.get("slos") or {}
    return "; ".join(
        f"{name} {_interval(slo.get('value') if isinstance(slo, dict) else slo)}" for name, slo in slos.items()
    )


def _stress(v: dict[str, Any]) -> str:
    peaks = " / ".join(f"{p:g}" for p in v.get("per_job_peak_mb") or [])
    return f"peaks {peaks} MB, {v.get('oom_kills')} OOM kills, control {v.get('control_oom_kills')} OOM kills"


def _counted(v: dict[str, Any]) -> str:
    return f"{v.get('count')} found in {v.get('files_scanned')} files"


def _command(v: dict[str, Any]) -> str:
    return f"exit code {v.get('exit_code')}"


FORMATTERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "pytest": _pytest,
    "coverage": _coverage,
    "perf_guard": _perf_guard,
    "perf_baseline": _perf_baseline,
    "canary": _canary,
    "stress": _stress,
    "stub_scan": _counted,
    "import_hacks": _counted,
    "command": _command,
}


def figure(check: CheckResult) -> str:
    """One check's measured value in a few words (the reason when nothing was measured)."""
    fmt = FORMATTERS.get(check.kind)
    if not check.measured or not isinstance(check.value, dict) or fmt is None:
        return check.reason
    try:
        return fmt(check.value)
    except (TypeError, ValueError, KeyError, AttributeError):
        return check.reason  # a value of another shape than the kind usually writes: its reason says it


def key_figures(manifest: Manifest) -> dict[str, str]:
    return {c.id: figure(c) for c in manifest.checks}
