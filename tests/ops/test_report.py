"""Reports as a reader sees them: the HTML opened in real headless Chromium, compared with the bundles' JSON.

The committed bundles under proofs/ are the real input (copied to tmp_path, so status's cache and the
pages are written there); edge cases (TAMPERED, STALE, NOT RUN, FAIL) are made on copies.  What a
reader sees is the rendered page's ``innerText`` and the rendered size of every image, read by a
small script added to a copy of the page before Chromium opens it with ``--dump-dom``.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from montage.errors import UsageError
from montage.ops import report_history
from montage.ops.adr_render import render
from montage.ops.cli import main as ops_main
from montage.ops.report_pages import main as report_main
from montage.ops.report_pages import write
from tests.ops.conftest import Repo, simple_phase

PROJECT = Path(__file__).resolve().parents[2]
TEMPLATES = PROJECT / "montage" / "ops" / "templates" / "report"

PROBE = """<script>
function seen(doc) {
  var images = Array.prototype.map.call(doc.images, function (i) {
    var r = i.getBoundingClientRect();
    return {alt: i.alt, natural: [i.naturalWidth, i.naturalHeight], box: [r.width, r.height]};
  });
  var phases = {};
  doc.querySelectorAll("section[data-phase]").forEach(function (s) { phases[s.dataset.phase] = s.innerText; });
  return {text: doc.body.innerText, images: images, phases: phases};
}
window.addEventListener("load", function () {
  var pages = {};
  document.querySelectorAll("iframe").forEach(function (f) { pages[f.dataset.page] = seen(f.contentDocument); });
  var pre = document.createElement("pre");
  pre.id = "montage-probe";
  pre.textContent = JSON.stringify(pages);
  document.body.appendChild(pre);
});
</script>"""


def seen_all(chromium: str, pages: list[Path]) -> dict[str, dict[str, Any]]:
    """Open every page in one headless Chromium (one iframe each, 1200 px wide); per page name: its
    rendered text, the text of each phase section and the rendered size of every image."""
    frames = "".join(
        f'<iframe data-page="{p.name}" src="{p.as_uri()}" style="width:1200px;height:900px"></iframe>' for p in pages
    )
    probe = pages[0].with_name("probe.html")
    probe.write_text(f"<!DOCTYPE html><html><body>{frames}{PROBE}</body></html>", encoding="utf-8")
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    done = subprocess.run(
        [*argv, "--virtual-time-budget=20000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    match = re.search(r'<pre id="montage-probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"Chromium rendered no probe (exit {done.returncode}): {done.stderr[-800:]}"
    data: dict[str, dict[str, Any]] = json.loads(html.unescape(match.group(1)))
    assert sorted(data) == sorted(p.name for p in pages), "every page was opened"
    return data


def seen(chromium: str, page: Path) -> dict[str, Any]:
    return seen_all(chromium, [page])[page.name]


def manifests(proofs: Path) -> dict[int, dict[str, Any]]:
    """Every latest manifest, read as plain JSON (not through the toolkit's models)."""
    out = {}
    for path in sorted(proofs.glob("phase-*/latest/manifest.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out[int(data["phase_id"])] = data
    return out


def expected_figures(check: dict[str, Any]) -> list[str]:
    """Strings a reader must find for a check, formatted here from the manifest's raw values."""
    v, kind = check["value"], check["kind"]
    if kind == "pytest":
        return [f"{v['passed']} passed"]
    if kind == "coverage":
        return [f"{name} {pct} %" for name, pct in v["modules"].items() if pct is not None]
    if kind == "perf_guard":
        ratios = {k: d for k, d in v.items() if k.endswith("_ratio")}
        assert ratios, f"a perf guard value with no ratio: {sorted(v)}"
        return [
            f"{k[: -len('_ratio')].replace('_', ' ')} ratio {d['point']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"
            for k, d in ratios.items()
        ]
    if kind == "perf_baseline":
        return [f"{v['fps']:.2f} CPU-time fps"]
    if kind == "stress":
        return [" / ".join(f"{p:g}" for p in v["per_job_peak_mb"]) + " MB"]
    if kind == "command":
        return [f"exit code {v['exit_code']}"]
    if kind == "canary":  # every SLO with an interval, as the canary recorded it
        rows = {name: slo["value"] for name, slo in ((v or {}).get("slos") or {}).items()}
        intervals = {n: d for n, d in rows.items() if isinstance(d, dict) and {"low", "high"} <= set(d)}
        return [
            f"{n} {next(d[k] for k in ('point', 'ratio', 'rate') if k in d):.3f} [{d['low']:.3f}, {d['high']:.3f}]"
            for n, d in intervals.items()
        ]
    return []


def statuses(root: Path, phases: Path, proofs: Path, capsys: pytest.CaptureFixture[str]) -> dict[int, dict[str, Any]]:
    """``python -m montage.ops status --json``: the state a report must show."""
    capsys.readouterr()
    args = ["status", "--json", "--repo-root", str(root), "--phases-dir", str(phases), "--proofs-dir", str(proofs)]
    assert ops_main(args) == 0
    return {int(s["id"]): s for s in json.loads(capsys.readouterr().out)}


def copy_inputs(dest: Path, cache_from: Path | None = None) -> tuple[Path, Path]:
    """The committed phases/ and proofs/ (without git-ignored caches and runs) under ``dest``.

    ``cache_from``: a proofs copy whose re-judging cache (keyed by manifest hash and judging code)
    is reused, so the canary bootstraps are not re-run; files are re-hashed whatever the cache says."""
    ignore = shutil.ignore_patterns(".cache", ".locks", "runs", ".index.json")
    shutil.copytree(PROJECT / "phases", dest / "phases", ignore=ignore)
    shutil.copytree(PROJECT / "proofs", dest / "proofs", ignore=ignore)
    if cache_from is not None and (cache_from / ".cache").is_dir():
        shutil.copytree(cache_from / ".cache", dest / "proofs" / ".cache")
    return dest / "phases", dest / "proofs"


@pytest.fixture(scope="module")
def chromium(require_tool: Callable[[str, str], str]) -> str:
    return require_tool("chromium", "chromium")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("report-real")
    phases, proofs = copy_inputs(base)
    write(PROJECT, phases, proofs, base / "reports")
    return {"phases": phases, "proofs": proofs, "out": base / "reports"}


def test_overview_in_chromium_shows_every_phase_as_its_bundle_and_status_say(
    chromium: str, real: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    page = seen(chromium, real["out"] / "index.html")
    states = statuses(PROJECT, real["phases"], real["proofs"], capsys)
    bundles = manifests(real["proofs"])
    assert bundles, "the repository has committed bundles to report on"
    assert sorted(int(k) for k in page["phases"]) == sorted(states)
    for pid, m in bundles.items():
        card = page["phases"][str(pid)]
        state = states[pid]["state"]
        assert f"Phase {pid}: {m['phase_title']}" in card
        assert re.search(rf"Phase {pid}: .*\b{re.escape(state)}\b", card), (pid, state, card[:300])
        assert f"verdict {m['verdict']}" in card
        assert m["finished_at"] in card and m["git"]["commit"][:10] in card
        st = states[pid]  # the signature as status --json judged it, independently of the page
        signature = f"SIGNED by {st['signed_by']}" if st["signature"] == "SIGNED" else st["signature"]
        assert f"signature {signature}" in card, (pid, signature, card[:300])
        assert st["selftest"] and st["selftest"] in card, (pid, st["selftest"], card[:300])  # as status --json says
        for check in m["checks"]:
            for text in expected_figures(check):
                if state == "TAMPERED":
                    assert text not in card
                else:
                    assert text in card, (pid, check["id"], text)
        if state == "STALE":
            assert "NOT CURRENT" in card
    history = [json.loads(line) for line in (real["proofs"] / "history.jsonl").read_text().splitlines()]
    assert f"Phase history ({len(history)} runs)" in page["text"]
    assert page["images"], "the overview draws the phase history"
    for img in page["images"]:
        assert min(img["natural"]) > 0 and min(img["box"]) > 0, img


def test_phase_pages_show_checks_and_plots_each_naming_a_bundle_file(chromium: str, real: dict[str, Path]) -> None:
    bundles = manifests(real["proofs"])
    drawn = set()
    pages = seen_all(chromium, [real["out"] / f"phase-{pid:02d}.html" for pid in bundles])
    for pid, m in bundles.items():
        page_path = real["out"] / f"phase-{pid:02d}.html"
        page = pages[page_path.name]
        text = page["text"]
        assert f"Phase {pid}: {m['phase_title']}" in text
        for check in m["checks"]:
            assert re.search(rf"^{re.escape(check['id'])}\t{check['kind']}\t.*\t{check['verdict']}\t", text, re.M)
        captions = re.findall(r"drawn from <code class=\"source\">([^<]+)</code>", page_path.read_text())
        assert len(captions) == len(page["images"]) > 0
        for caption in captions:
            first = Path(html.unescape(caption).split(" ")[0])
            named = first if first.is_absolute() else PROJECT / first
            assert named.is_file(), f"phase {pid}: the figure names {first}, which does not exist"
        for img in page["images"]:
            assert min(img["natural"]) > 0 and min(img["box"]) > 0, (pid, img)
            drawn.add(img["alt"])
    kinds = {c["kind"] for m in bundles.values() for c in m["checks"]}
    if "coverage" in kinds:
        assert "Coverage by module against its threshold" in drawn
    if "canary" in kinds:
        assert any(a.startswith("Canary latency, baseline vs candidate") for a in drawn)
    if "perf_guard" in kinds:
        assert "Performance guard: runs, history and intervals" in drawn


def test_tampered_stale_and_missing_bundles_read_as_such(
    chromium: str, real: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    phases, proofs = copy_inputs(tmp_path, cache_from=real["proofs"])
    bundles = manifests(proofs)
    # TAMPERED: one evidence byte of phase 2's pytest run
    summary = proofs / "phase-02/latest/evidence/pytest/pytest_summary.txt"
    summary.write_text(summary.read_text() + " ", encoding="utf-8")
    # STALE: phase 3's definition changed (its goal)
    p3 = next(phases.glob("03-*.yaml"))
    p3.write_text(re.sub(r"^goal: .*$", "goal: a changed goal", p3.read_text(), count=1, flags=re.M))
    # NOT RUN: phase 5's bundle is gone
    shutil.rmtree(proofs / "phase-05/latest")
    capsys.readouterr()
    assert report_main(["--repo-root", str(PROJECT), "--phases-dir", str(phases), "--proofs-dir", str(proofs),
                        "--out", str(tmp_path / "reports")]) == 0  # fmt: skip
    assert str(tmp_path / "reports" / "index.html") in capsys.readouterr().out
    both = seen_all(chromium, [tmp_path / "reports" / "index.html", tmp_path / "reports" / "phase-02.html"])
    cards = both["index.html"]["phases"]
    pytest2 = next(c for c in bundles[2]["checks"] if c["kind"] == "pytest")
    passed2 = f"{pytest2['value']['passed']} passed"
    assert "TAMPERED" in cards["2"] and "figures withheld" in cards["2"] and passed2 not in cards["2"]
    assert "pytest_summary.txt" in cards["2"]  # the reason names the file that changed
    assert "STALE" in cards["3"] and "NOT CURRENT" in cards["3"] and "03-config" in cards["3"]
    assert "NOT RUN" in cards["5"] and "passed" not in cards["5"] and "invoke phase.run 5" in cards["5"]
    page2 = both["phase-02.html"]
    assert "TAMPERED" in page2["text"] and passed2 not in page2["text"]
    assert all("Canary" not in img["alt"] for img in page2["images"])  # no plot from a tampered bundle


def test_phase_run_appends_history_and_writes_the_report(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = """
    gate:
      - id: ok
        check: command
        with: {argv: ["{python}", "-c", "print('broken')"], output_pattern: "fine"}
    """
    repo.phase("00-first.yaml", simple_phase(0, "first", gate=failing))
    repo.commit_all()
    capsys.readouterr()
    assert repo.ops("run", "0") == 1
    out = capsys.readouterr().out
    assert "report: var/reports/index.html" in out and "history: proofs/history.jsonl" in out
    rows = [json.loads(line) for line in (repo.proofs / "history.jsonl").read_text().splitlines()]
    manifest = json.loads((repo.proofs / "phase-00/latest/manifest.json").read_text())
    assert [(r["phase"], r["verdict"], r["date"]) for r in rows] == [(0, "FAIL", manifest["finished_at"])]
    md = (repo.root / "var/reports/index.md").read_text()
    assert "| **FAIL** | FAIL |" in md
    assert "output did not match" in md or manifest["reasons"][0][:40] in md
    repo.phase("00-first.yaml", simple_phase(0, "first"))
    repo.commit_all()
    assert repo.ops("run", "0") == 0
    rows = [json.loads(line) for line in (repo.proofs / "history.jsonl").read_text().splitlines()]
    assert [r["verdict"] for r in rows] == ["FAIL", "PASS"]
    assert "FAIL PASS" in (repo.root / "var/reports/index.md").read_text()
    assert (repo.root / "var/reports/phase-00.html").is_file()
    assert repo.ops("gate", "0") == 0  # a gate bundle is not a run: no history line
    assert len((repo.proofs / "history.jsonl").read_text().splitlines()) == 2


def test_missing_template_value_names_the_template_and_line() -> None:
    source = (TEMPLATES / "overview.html.j2").read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if "counts" in text)
    with pytest.raises(UsageError) as err:
        render("report/overview.html.j2", trim_blocks=True, phases=[], plots=[], history_file="h", colours={})
    assert f"overview.html.j2, line {line}" in str(err.value) and "'counts' is undefined" in str(err.value)


def test_malformed_history_is_refused_naming_file_and_line(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first"))
    good = report_history.HistoryEntry(
        phase=0, slug="first", verdict="PASS", date="2026-01-01T00:00:00Z", commit=None, dirty=None,
        forced=False, figures={}, bundle="b",
    )  # fmt: skip
    (repo.proofs).mkdir()
    (repo.proofs / "history.jsonl").write_text(good.model_dump_json() + "\n" + '{"phase": "x"}\n')
    capsys.readouterr()
    assert report_main(["--repo-root", str(repo.root)]) == 2
    err = capsys.readouterr().err
    assert f"{repo.proofs / 'history.jsonl'}:2:" in err and "phase" in err
    assert not (repo.root / "var/reports").exists()  # nothing half-written


def test_backfill_reads_every_committed_version_of_latest(repo: Repo) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first"))
    repo.commit_all()
    assert repo.ops("run", "0") == 0
    (repo.proofs / "history.jsonl").unlink()  # as if the runs predate the index
    repo.commit_all("first bundle")
    assert repo.ops("run", "0") == 0
    (repo.proofs / "history.jsonl").unlink()
    repo.commit_all("second bundle")
    found = report_history.backfill(repo.root, repo.proofs)
    assert [(e.phase, e.verdict) for e in found] == [(0, "PASS"), (0, "PASS")]
    assert len({(e.date, e.commit) for e in found}) == 2  # two runs may share a second on a quiet machine


def test_report_modules_do_not_import_matplotlib_until_drawing() -> None:
    code = "import sys, montage.ops.report_pages, montage.ops.runner; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
