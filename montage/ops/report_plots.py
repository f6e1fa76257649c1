"""The report's plots as SVG text, drawn with matplotlib (imported only inside the drawing functions).

Each :class:`Plot` names the bundle file its data came from; a page prints that name under it.
The readers (``*_plot``) take already-parsed bundle data and return ``None`` when the bundle holds
nothing to draw, so a page never shows an empty axis.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_COLOURS = {
    "PASS": "#2e7d32",
    "FAIL": "#c62828",
    "PARTIAL": "#ef6c00",
    "INCONCLUSIVE": "#f9a825",
    "ERROR": "#ad1457",
    "TAMPERED": "#6a1b9a",
    "STALE": "#616161",
    "OVERRIDDEN": "#8d6e63",
    "NOT RUN": "#9e9e9e",
}


@dataclass(frozen=True)
class Plot:
    name: str  # file stem, e.g. "phase-01-coverage"
    title: str
    svg: str
    source: str  # the bundle file(s) it was drawn from, as the page shows them


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buf.getvalue()


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "montage-report"  # stable element ids: same data, same bytes
    matplotlib.rcParams["font.size"] = 9
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def coverage_plot(name: str, measured: dict[str, float], thresholds: dict[str, float], source: str) -> Plot | None:
    """Horizontal bars per module with its threshold as a tick; red where a module is short of it."""
    if not measured:
        return None
    mods = sorted(measured)
    fig = _figure(7.0, 0.45 * len(mods) + 1.0)
    ax = fig.add_subplot()
    colours = [STATE_COLOURS["PASS"] if measured[m] >= thresholds.get(m, 0.0) else STATE_COLOURS["FAIL"] for m in mods]
    ax.barh(mods, [measured[m] for m in mods], color=colours)
    for i, m in enumerate(mods):
        if m in thresholds:
            ax.plot([thresholds[m]] * 2, [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.text(min(measured[m], 99.0), i, f" {measured[m]:.2f} %", va="center", ha="right", color="white")
    ax.set_xlim(0, 100)
    ax.set_xlabel("line coverage % (black tick: the gate's threshold)")
    ax.invert_yaxis()
    return Plot(name, "Coverage by module against its threshold", _svg(fig), source)


def perf_plot(name: str, report: dict[str, Any], history: list[dict[str, Any]], source: str) -> Plot | None:
    """Left: CPU-time fps of every measured run per side. Right: the fps-ratio interval of each guard run."""
    samples = [s for s in report.get("samples") or [] if not s.get("warmup")]
    if not samples and not history:
        return None
    fig = _figure(8.0, 3.0)
    left, right = fig.subplots(1, 2)
    sides = sorted({str(s.get("side")) for s in samples})
    for i, side in enumerate(sides):
        ys = [float(s["cpu_fps"]) for s in samples if s.get("side") == side]
        left.scatter([i] * len(ys), ys, label=side, alpha=0.8)
    baseline = (report.get("baseline") or {}).get("fps")
    if isinstance(baseline, (int, float)):
        left.axhline(baseline, color="black", linestyle="--", linewidth=1, label="stored baseline")
    left.set_xticks(range(len(sides)), sides)
    left.set_ylabel("CPU-time fps per run")
    left.set_title("runs", fontsize=9)
    left.legend(fontsize=7)
    threshold = 1.0 - float((report.get("thresholds") or {}).get("max_fps_drop", 0.1))
    for i, h in enumerate(history):
        low, high = h["fps_interval"]
        point = h["fps_ratio"]
        colour = STATE_COLOURS.get(str(h.get("verdict")), "#444444")
        right.errorbar([i], [point], yerr=[[point - low], [high - point]], fmt="o", color=colour, capsize=4)
    right.axhline(threshold, color=STATE_COLOURS["FAIL"], linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    right.axhline(1.0, color="grey", linewidth=0.5)
    right.set_xticks(range(len(history)), [str(h.get("finished_at", ""))[:16] for h in history], rotation=20)
    right.set_ylabel("candidate / baseline fps (95 % interval)")
    right.set_title("guard history", fontsize=9)
    right.legend(fontsize=7)
    return Plot(name, "Performance guard: runs, history and intervals", _svg(fig), source)


def canary_plot(name: str, metrics: dict[str, Any], source: str) -> Plot | None:
    """Latency distributions of both sides (log-scaled histogram) with each side's p99."""
    sides = metrics.get("sides") or {}
    data = {
        side: [float(x) * 1000.0 for x in (body.get("samples") or {}).get("latency_s") or [] if x is not None]
        for side, body in sides.items()
    }
    data = {k: v for k, v in data.items() if v}
    if not data:
        return None
    import numpy as np

    fig = _figure(7.0, 3.0)
    ax = fig.add_subplot()
    everything = np.concatenate([np.asarray(v) for v in data.values()])
    low, high = max(float(everything.min()), 0.01), float(everything.max())
    bins = np.geomspace(low, high * 1.01, 50) if high > low else 10
    for side in sorted(data):
        values = np.asarray(data[side])
        p99 = float(np.percentile(values, 99))
        line = ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"{side} ({len(values)} requests)")
        colour = line[2][0].get_edgecolor()
        ax.axvline(p99, color=colour, linestyle="--", linewidth=1, label=f"{side} p99 {p99:.1f} ms")
    ax.set_xscale("log")
    ax.set_xlabel("request latency (ms, log scale)")
    ax.set_ylabel("requests")
    ax.legend(fontsize=7)
    synthetic = " (synthetic local load)" if metrics.get("synthetic") else ""
    return Plot(name, f"Canary latency, baseline vs candidate{synthetic}", _svg(fig), source)


def history_plot(name: str, rows: list[dict[str, Any]], source: str) -> Plot | None:
    """Every recorded phase run: date against phase, coloured and labelled by verdict."""
    if not rows:
        return None
    import datetime as dt

    fig = _figure(8.0, 0.3 * len({r["phase"] for r in rows}) + 1.6)
    ax = fig.add_subplot()
    for verdict in sorted({r["verdict"] for r in rows}):
        chosen = [r for r in rows if r["verdict"] == verdict]
        xs = [dt.datetime.strptime(r["date"], "%Y-%m-%dT%H:%M:%SZ") for r in chosen]
        ax.scatter(xs, [r["phase"] for r in chosen], color=STATE_COLOURS.get(verdict, "#444444"), label=verdict)
    from matplotlib.dates import DateFormatter

    dates = [dt.datetime.strptime(r["date"], "%Y-%m-%dT%H:%M:%SZ") for r in rows]
    pad = max((max(dates) - min(dates)) * 0.05, dt.timedelta(minutes=30))  # one run: not a decade-wide axis
    ax.set_xlim(min(dates) - pad, max(dates) + pad)
    ax.xaxis.set_major_formatter(DateFormatter("%m-%d %H:%M"))  # type: ignore[no-untyped-call]
    phases = sorted({r["phase"] for r in rows})
    ax.set_yticks(phases, [f"phase {p}" for p in phases])
    ax.invert_yaxis()
    ax.set_xlabel("run finished (UTC)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.autofmt_xdate()
    return Plot(name, f"Phase history ({len(rows)} runs)", _svg(fig), source)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            out.append(row)
    return out
