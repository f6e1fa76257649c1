"""perf_report.json + perf_report.md + perf_report.svg for every guard run, and the history file."""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from montage.core.files import atomic_write_text
from montage.ops.calibration import append_row, read_rows
from montage.ops.perf.guard import REPORT_SCHEMA, GuardResult, report_params
from montage.ops.perf.measure import RunSample

REPORT_JSON = "perf_report.json"
REPORT_MD = "perf_report.md"
REPORT_SVG = "perf_report.svg"
COLOURS = {"baseline": "#1f77b4", "candidate": "#d62728", "stored": "#7f7f7f"}
VERDICT_COLOURS = {"PASS": "#2ca02c", "FAIL": "#d62728", "INCONCLUSIVE": "#ff7f0e"}


def to_document(result: GuardResult) -> dict[str, Any]:
    """The JSON report: verdict, decisions, thresholds, sides, raw samples (enough to re-judge)."""
    return {
        "schema": REPORT_SCHEMA,
        "verdict": result.verdict.value,
        "mode": result.mode,
        "reason": result.reason,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(result.elapsed_s, 3),
        "thresholds": report_params(result.params)[0],
        "config": report_params(result.params)[1],
        "decisions": {name: d.to_dict() for name, d in result.decisions.items()},
        "steps": result.steps,
        "sides": result.sides,
        "fingerprint": result.fingerprint,
        "fingerprint_differences": result.fingerprint_differences,
        "baseline": result.baseline_file,
        "samples": [s.to_dict() for s in result.samples],
        "prior_samples": [s.to_dict() for s in result.prior_samples],
        "trend": result.trend,
    }


def history_entry(doc: dict[str, Any]) -> dict[str, Any]:
    # the render stage's figures (named fps / rss in reports before issue 14)
    fps = doc["decisions"].get("cpu:render") or doc["decisions"].get("fps") or {}
    rss = doc["decisions"].get("rss:render") or doc["decisions"].get("rss") or {}
    return {
        "finished_at": doc["finished_at"],
        "verdict": doc["verdict"],
        "mode": doc["mode"],
        "commit": doc["sides"].get("candidate", {}).get("commit", ""),
        "dirty": doc["sides"].get("candidate", {}).get("dirty", False),
        "fps_ratio": (fps.get("interval") or {}).get("point"),
        "fps_interval": [(fps.get("interval") or {}).get(k) for k in ("low", "high")],
        "rss_ratio": (rss.get("interval") or {}).get("point"),
        "stage_ratios": {
            name: (d.get("interval") or {}).get("point") for name, d in doc["decisions"].items() if ":" in name
        },
        "elapsed_s": doc["elapsed_s"],
    }


def append_history(path: Path, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Append one JSON line (O_APPEND: never rewrites earlier lines) and return the whole history."""
    append_row(path, entry)
    return read_rows(path)


def _scale(value: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    if hi <= lo:
        return (out_lo + out_hi) / 2
    return out_lo + (value - lo) * (out_hi - out_lo) / (hi - lo)


def _hline(x: float, w: float, y: float, dash: str) -> str:
    return f'<line x1="{x}" x2="{x + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#555" stroke-dasharray="{dash}"/>'


def _dot(x: float, y: float, colour: str, title: str) -> str:
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"><title>{html.escape(title)}</title></circle>'


def svg_plot(
    samples: Sequence[RunSample], baseline_fps: float, history: Sequence[dict[str, Any]], threshold: float
) -> str:
    """Two panels: CPU-time fps per run (by side, stored baseline as a line) and the fps-ratio history."""
    width, height, pad = 760, 300, 45
    panel_w = (width - 3 * pad) / 2
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    measured = [s for s in samples if not s.warmup and s.stage == "render"]
    values = [s.cpu_fps for s in measured] + [baseline_fps, baseline_fps * threshold]
    lo, hi = min(values) * 0.97, max(values) * 1.03
    x0, y_top, y_bot = pad, 30.0, height - pad
    out.append(f'<text x="{x0}" y="18">CPU-time fps per measured run (render stage)</text>')
    out.append(f'<rect x="{x0}" y="{y_top}" width="{panel_w}" height="{y_bot - y_top}" fill="none" stroke="#999"/>')
    limits = (("baseline", baseline_fps, ""), (f"-{(1 - threshold):.0%}", baseline_fps * threshold, "4,3"))
    for label, value, dash in limits:
        y = _scale(value, lo, hi, y_bot, y_top)
        out.append(_hline(x0, panel_w, y, dash))
        out.append(f'<text x="{x0 + panel_w + 2}" y="{y + 4:.1f}">{html.escape(label)}</text>')
    for i, s in enumerate(measured):
        x = _scale(i, 0, max(1, len(measured) - 1), x0 + 10, x0 + panel_w - 10)
        y = _scale(s.cpu_fps, lo, hi, y_bot, y_top)
        colour = COLOURS.get(s.side, "#000")
        out.append(_dot(x, y, colour, f"{s.side}: {s.cpu_fps:.2f} fps"))
    legend = f"{lo:.0f}..{hi:.0f} fps; red = candidate, blue = baseline (A/B)"
    out.append(f'<text x="{x0}" y="{y_bot + 15}">{legend}</text>')
    # history panel
    x1 = 2 * pad + panel_w
    ratios = [h for h in history if isinstance(h.get("fps_ratio"), int | float)][-40:]
    out.append(f'<text x="{x1}" y="18">History: fps ratio candidate/baseline (last {len(ratios)})</text>')
    out.append(f'<rect x="{x1}" y="{y_top}" width="{panel_w}" height="{y_bot - y_top}" fill="none" stroke="#999"/>')
    if ratios:
        rv = [float(h["fps_ratio"]) for h in ratios] + [1.0, threshold]
        rlo, rhi = min(rv) - 0.02, max(rv) + 0.02
        for value, dash in ((1.0, ""), (threshold, "4,3")):
            y = _scale(value, rlo, rhi, y_bot, y_top)
            out.append(_hline(x1, panel_w, y, dash))
        for i, h in enumerate(ratios):
            x = _scale(i, 0, max(1, len(ratios) - 1), x1 + 10, x1 + panel_w - 10)
            y = _scale(float(h["fps_ratio"]), rlo, rhi, y_bot, y_top)
            colour = VERDICT_COLOURS.get(str(h.get("verdict")), "#000")
            out.append(_dot(x, y, colour, f"{h.get('finished_at')} {h.get('verdict')} {float(h['fps_ratio']):.3f}"))
        legend = f"{rlo:.2f}..{rhi:.2f}; green PASS, red FAIL, orange INCONCLUSIVE"
        out.append(f'<text x="{x1}" y="{y_bot + 15}">{legend}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _fmt_interval(d: dict[str, Any]) -> str:
    iv = d.get("interval")
    if not iv:
        return "n/a"
    return f"{iv['point']:.4f} [{iv['low']:.4f}, {iv['high']:.4f}]"


def markdown(doc: dict[str, Any]) -> str:
    th = doc["thresholds"]
    lines = [
        f"# Perf guard: {doc['verdict']}",
        "",
        f"{doc['reason']}. Mode: `{doc['mode']}`; {doc['elapsed_s']:.1f} s; finished {doc['finished_at']}.",
        "",
        f"Per stage: FAIL when the interval of the median candidate/baseline pair ratio lies beyond "
        f"-{th['max_fps_drop']:.0%} CPU-time fps (or the stage's own limit {th.get('stage_max_drop') or {}}) or "
        f"+{th['max_rss_growth']:.0%} ffmpeg peak RSS; PASS when every figure clears; otherwise INCONCLUSIVE. "
        "The interval's coverage is the one shown (order statistics of the pair ratios: exact, not asymptotic).",
        "",
        "| metric | ratio [interval] | threshold | verdict | why |",
        "|---|---|---|---|---|",
    ]
    for name, d in doc["decisions"].items():
        lines.append(f"| {name} | {_fmt_interval(d)} | {d['threshold']:.2f} | {d['verdict']} | {d['reason']} |")
    found = doc.get("trend") or {}
    if found.get("compared"):
        shown = ", ".join(f"{k} {v:.3f}" for k, v in found["cpu_fps_ratio"].items())
        lines += ["", f"Trend against the stored baseline (informational, never a decision): {shown}."]
    lines += ["", "![samples and history](perf_report.svg)", "", "## Steps", ""]
    lines += [f"- {s}" for s in doc["steps"]] or ["- (none)"]
    lines += ["", "## Code measured", "", "| side | tree | commit | dirty | workload |", "|---|---|---|---|---|"]
    for name, side in doc["sides"].items():
        commit = side["commit"][:12]
        lines.append(f"| {name} | `{side['tree']}` | `{commit}` | {side['dirty']} | {side['workload_kind']} |")
    if doc["fingerprint_differences"]:
        lines += ["", f"Fingerprint differs from the baseline's in: {', '.join(doc['fingerprint_differences'])}."]
    lines += [
        "",
        "## Runs",
        "",
        "| # | step | side | stage | warm-up | frames | user s | sys s | wall s | CPU fps | wall fps "
        "| ffmpeg RSS MiB | parent RSS MiB | load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = [("stored", s) for s in doc["prior_samples"]] + [(doc["mode"], s) for s in doc["samples"]]
    for i, (step, s) in enumerate(runs, 1):
        lines.append(
            f"| {i} | {step} | {s['side']} | {s.get('stage', 'render')} | {'yes' if s['warmup'] else ''} "
            f"| {s['frames']} "
            f"| {s['user_s']:.2f} | {s['sys_s']:.2f} "
            f"| {s['wall_s']:.2f} | {s['cpu_fps']:.1f} | {s['wall_fps']:.1f} | {s['ffmpeg_rss_mb']:.1f} "
            f"| {s['parent_rss_mb']:.1f} | {s['loadavg_before'][0]:.2f} |"
        )
    base = doc["baseline"]
    lines += [
        "",
        f"Stored baseline `{base['path']}`: fps {base['fps']:.2f}, rss_mb {base['rss_mb']:.1f}, "
        f"commit `{str(base['commit'])[:12]}`, captured {base['captured_at']}.",
        "",
    ]
    return "\n".join(lines)


def write_report(result: GuardResult, report_dir: Path, history_file: Path) -> dict[str, Any]:
    """Write the three report files and append to the history; return the JSON document."""
    doc = to_document(result)
    history = append_history(history_file, history_entry(doc))
    report_dir.mkdir(parents=True, exist_ok=True)
    threshold = 1.0 - result.params.max_fps_drop
    plot = svg_plot(result.samples, float(result.baseline_file["fps"]), history, threshold)
    atomic_write_text(report_dir / REPORT_SVG, plot)
    atomic_write_text(report_dir / REPORT_MD, markdown(doc))
    atomic_write_text(report_dir / REPORT_JSON, json.dumps(doc, indent=2) + "\n")
    return doc
