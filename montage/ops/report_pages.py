"""``invoke report``: a roadmap overview and one page per phase bundle, as Markdown and as HTML.

Pages go to ``var/reports/`` (``index.html``/``index.md`` and ``phase-NN.html``/``phase-NN.md``;
the Markdown pages link the SVG plots in ``figures/``, the HTML pages inline them, with the CSS, so
each HTML file is one self-contained page that needs no network).  Templates live in
``montage/ops/templates/report/`` and render with StrictUndefined: a missing value is an error
naming the template and line, never a blank.

What a state means for the figures (issue 10): a TAMPERED bundle's figures are withheld; a STALE
bundle's are shown marked "not current"; NOT RUN has none.  Every plot names the bundle file it
was drawn from.
"""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from montage.core.files import atomic_write_text
from montage.errors import ExitCode, MontageError, run_reporting
from montage.ops import bundle as bundles
from montage.ops import report_history as history
from montage.ops.adr_render import render
from montage.ops.loader import LoadedPhase, load_roadmap
from montage.ops.manifest import Manifest
from montage.ops.report_figures import figure
from montage.ops.report_plots import (
    STATE_COLOURS,
    Plot,
    canary_plot,
    coverage_plot,
    history_plot,
    perf_plot,
    read_json,
    read_jsonl,
)
from montage.ops.rollback import plan as rollback_plan
from montage.ops.selftest import summary as selftest_summary
from montage.ops.status import PhaseStatus, phase_status

REPORTS_DIR = "var/reports"
CURRENT = {"PASS", "FAIL", "PARTIAL", "OVERRIDDEN"}  # states whose figures are the bundle's current figures
HISTORY_SHOWN = 12


@dataclass(frozen=True)
class CheckView:
    id: str
    kind: str
    critical: bool
    verdict: str
    figure: str
    expected: str
    reason: str
    evidence: str


@dataclass(frozen=True)
class PhaseView:
    id: int
    slug: str
    title: str
    goal: str
    state: str
    colour: str
    verdict: str
    date: str
    commit: str
    bundle: str
    signature: str
    selftest: str  # montage.ops.selftest.summary: self-tested when, stale, unable to fail, or not self-tested
    forced_reasons: list[str]
    reasons: list[str]
    rollback: list[str]
    figures: dict[str, str]
    figures_note: str  # "" when the figures are current
    checks: list[CheckView]
    history: list[dict[str, Any]]
    synthetic: bool
    plots: list[Plot] = field(default_factory=list)

    @property
    def page(self) -> str:
        return f"phase-{self.id:02d}"


@dataclass(frozen=True)
class Written:
    overview_html: Path
    overview_md: Path
    pages: list[Path]


def signature_state(st: PhaseStatus) -> str:
    """The bundle's signature as montage.ops.status judged it: "SIGNED by name (id)", UNSIGNED, UNTRUSTED, FORGED."""
    if st.signature == "SIGNED":
        return f"SIGNED by {st.signed_by}"
    if st.signature in ("UNTRUSTED", "FORGED"):
        return f"{st.signature}: {st.signature_reason}"
    return st.signature or "UNSIGNED"


def _figures_note(state: str, reasons: list[str]) -> str:
    if state == "TAMPERED":
        return "figures withheld: the bundle is TAMPERED, so nothing it records can be trusted"
    if state == "STALE":
        return "figures from a STALE bundle, NOT CURRENT: " + "; ".join(reasons)
    return ""


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _plots(view_id: int, manifest: Manifest, latest: Path, bundle: str) -> list[Plot]:
    """The plots a bundle's evidence supports (coverage, canary latency, perf guard)."""
    phase_json = read_json(latest / "phase.json") or {}
    specs = {c.get("id"): c.get("with") or {} for c in phase_json.get("gate") or [] if isinstance(c, dict)}
    out: list[Plot] = []
    for c in manifest.checks:
        if not c.measured or not isinstance(c.value, dict):
            continue
        stem = f"phase-{view_id:02d}-{c.id}"
        where = f"{bundle}/{c.evidence_dir}"
        drawn: Plot | None = None
        if c.kind == "coverage":
            mods = {str(k): float(v) for k, v in (c.value.get("modules") or {}).items() if v is not None}
            limits = {str(k): float(v) for k, v in (specs.get(c.id, {}).get("modules") or {}).items()}
            source = (
                f"{bundle}/manifest.json (check {c.id}, measured into {where}/coverage.json); "
                f"thresholds: {bundle}/phase.json"
            )
            drawn = coverage_plot(stem, mods, limits, source)
        elif c.kind == "canary":
            name = f"{specs.get(c.id, {}).get('evidence_name', 'canary')}_metrics.json"  # the kind's file name
            metrics = read_json(latest / c.evidence_dir / name)
            if isinstance(metrics, dict):
                drawn = canary_plot(stem, metrics, f"{where}/{name}")
        elif c.kind == "perf_guard":
            report = read_json(latest / c.evidence_dir / "perf_report.json")
            rows = [r for r in read_jsonl(latest / c.evidence_dir / "history.jsonl") if "fps_interval" in r]
            if isinstance(report, dict):
                drawn = perf_plot(stem, report, rows, f"{where}/perf_report.json and {where}/history.jsonl")
        if drawn is not None:
            out.append(drawn)
    return out


def phase_view(
    lp: LoadedPhase, layout: bundles.ProofsLayout, root: Path, runs: list[history.HistoryEntry]
) -> PhaseView:
    st = phase_status(lp, layout, root)
    latest = layout.latest(lp.phase.id)
    manifest = bundles.read_manifest(latest) if st.state != "NOT RUN" else None
    note = _figures_note(st.state, st.reasons)
    bundle = st.bundle or _rel(latest, root)
    show = manifest is not None and st.state != "TAMPERED"
    checks = [
        CheckView(
            c.id, c.kind, c.critical, c.verdict.value, figure(c), c.expected, c.reason, f"{bundle}/{c.evidence_dir}"
        )
        for c in (manifest.checks if show and manifest is not None else [])
    ]
    own = [r for r in history.as_rows(runs) if r["phase"] == lp.phase.id]
    view = PhaseView(
        id=lp.phase.id,
        slug=lp.phase.slug,
        title=lp.phase.title,
        goal=lp.phase.goal,
        state=st.state,
        colour=STATE_COLOURS.get(st.state, "#444444"),
        verdict=st.verdict or "-",
        date=st.date or "-",
        commit=(st.commit or "-")[:10] + ("+dirty" if st.dirty else ""),
        bundle=bundle if manifest is not None else "-",
        signature=signature_state(st) if manifest is not None else "-",
        selftest=selftest_summary(lp, layout, root),
        forced_reasons=list(manifest.forced_reasons) if manifest is not None else [],
        reasons=list(st.reasons),
        rollback=[f"{s['id']}: {s['action']}" for s in rollback_plan(lp.phase)],
        figures={c.id: c.figure for c in checks},
        figures_note=note,
        checks=checks,
        history=own[-HISTORY_SHOWN:],
        synthetic=any(c.kind == "canary" for c in checks),
    )
    plots = _plots(view.id, manifest, latest, bundle) if show and manifest is not None else []
    hist = history_plot(f"{view.page}-history", own, f"{_rel(layout.root / history.HISTORY, root)} (phase {view.id})")
    return PhaseView(**{**view.__dict__, "plots": [*plots, *([hist] if hist else [])]})


def _data_uri(plot: Plot) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(plot.svg.encode("utf-8")).decode("ascii")


def build(root: Path, phases_dir: Path, proofs_dir: Path) -> tuple[list[PhaseView], list[Plot], str]:
    """Every phase's view, the overview's plots and the history file's displayed path."""
    layout = bundles.ProofsLayout(proofs_dir)
    runs = history.read(proofs_dir)
    views = [phase_view(lp, layout, root, runs) for lp in load_roadmap(phases_dir).ordered()]
    where = _rel(proofs_dir / history.HISTORY, root)
    overview = history_plot("overview-history", history.as_rows(runs), where)
    return views, [overview] if overview else [], where


def write(root: Path, phases_dir: Path, proofs_dir: Path, out_dir: Path) -> Written:
    """Render everything in memory first (a template error writes nothing), then write each file atomically."""
    views, overview_plots, history_file = build(root, phases_dir, proofs_dir)
    counts: dict[str, int] = {}
    for v in views:
        counts[v.state] = counts.get(v.state, 0) + 1
    common = {"history_file": history_file, "colours": STATE_COLOURS, "data_uri": _data_uri}
    files: dict[Path, str] = {}
    for fmt in ("html", "md"):
        files[out_dir / f"index.{fmt}"] = render(
            f"report/overview.{fmt}.j2", trim_blocks=True, phases=views, plots=overview_plots, counts=counts, **common
        )
        for v in views:
            files[out_dir / f"{v.page}.{fmt}"] = render(f"report/phase.{fmt}.j2", trim_blocks=True, p=v, **common)
    for plot in [*overview_plots, *(p for v in views for p in v.plots)]:
        files[out_dir / "figures" / f"{plot.name}.svg"] = plot.svg
    for path, text in files.items():
        atomic_write_text(path, text)
    return Written(out_dir / "index.html", out_dir / "index.md", [out_dir / f"{v.page}.html" for v in views])


def after_run(
    root: Path, phases_dir: Path, proofs_dir: Path, manifest: Manifest, bundle: str, out: Callable[[str], None]
) -> None:
    """What ``phase.run`` does after publishing: one history line, then the reports.

    The bundle is already published and its verdict decides the exit code, so a problem here is
    printed (naming what failed) rather than raised."""
    try:
        history.append(proofs_dir, history.entry(manifest, bundle))
        written = write(root, phases_dir, proofs_dir, root / REPORTS_DIR)
    except (MontageError, OSError) as exc:
        out(f"  report NOT written: {exc} (the bundle is published; `invoke report` retries)")
        return
    out(f"  history: {_rel(proofs_dir / history.HISTORY, root)}")
    out(f"  report: {_rel(written.overview_html, root)} (one page per phase beside it: phase-NN.html, .md)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m montage.ops.report_pages", description=__doc__.splitlines()[0])
    parser.add_argument("--repo-root", type=Path, default=None, help="repository root (default: found from cwd)")
    parser.add_argument("--phases-dir", type=Path, default=None, help="default: <root>/phases")
    parser.add_argument("--proofs-dir", type=Path, default=None, help="default: <root>/proofs")
    parser.add_argument("--out", type=Path, default=None, help=f"default: <root>/{REPORTS_DIR}")
    parser.add_argument(
        "--backfill-history",
        action="store_true",
        help="add every committed version of each latest/manifest.json (git history) to proofs/history.jsonl",
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else ExitCode.USAGE

    def body() -> int:
        from montage.ops.cli import Ctx

        ctx = Ctx(args)
        if args.backfill_history:
            found = history.backfill(ctx.root, ctx.proofs_dir)
            history.write(ctx.proofs_dir, [*history.read(ctx.proofs_dir), *found])
            ctx.out(f"history: {len(history.read(ctx.proofs_dir))} runs in {ctx.proofs_dir / history.HISTORY}")
        written = write(ctx.root, ctx.phases_dir, ctx.proofs_dir, args.out or ctx.root / REPORTS_DIR)
        ctx.out(f"report: {written.overview_html}")
        ctx.out(f"  markdown: {written.overview_md}; one page per phase: {', '.join(p.name for p in written.pages)}")
        return ExitCode.OK

    return run_reporting("report", body, debug=bool(args.debug))


if __name__ == "__main__":
    sys.exit(main())
