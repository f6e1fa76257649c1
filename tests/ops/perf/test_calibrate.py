"""The calibration script's pieces: the controls it applies, the resumable JSONL and the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage.errors import UsageError
from montage.ops.perf import calibrate, controls

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", sorted(controls.CONTROLS))
def test_every_control_applies_to_this_tree_and_changes_the_product(name: str, tmp_path: Path) -> None:
    for rel in (controls.RENDER, controls.ANALYSIS):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((REPO / rel).read_bytes())
    before = {rel: (tmp_path / rel).read_text(encoding="utf-8") for rel in (controls.RENDER, controls.ANALYSIS)}
    what = controls.apply(tmp_path, name)
    after = {rel: (tmp_path / rel).read_text(encoding="utf-8") for rel in before}
    assert what and after != before
    compile(after[controls.RENDER], str(controls.RENDER), "exec")  # still valid Python
    compile(after[controls.ANALYSIS], str(controls.ANALYSIS), "exec")
    # code that no longer has the control's anchor: an error, never a silent no-op
    for rel in before:
        (tmp_path / rel).write_text("# rewritten\n", encoding="utf-8")
    with pytest.raises(UsageError, match="expected exactly one"):
        controls.apply(tmp_path, name)


def test_unknown_control_is_named() -> None:
    with pytest.raises(UsageError, match="unknown perf control 'nope'"):
        controls.apply(Path("."), "nope")


def _row(condition: str, verdict: str, ratio: float | None = None) -> dict[str, object]:
    return {
        "condition": condition, "verdict": verdict, "pairs": 6, "elapsed_s": 80.0, "budget_s": 90.0,
        "load_1m": {"min": 3.0, "median": 4.0, "max": 5.0}, "decisions": {},
        "median_pair_ratio": {} if ratio is None else {"cpu:render": ratio},
    }  # fmt: skip


def test_results_are_appended_and_a_sitting_resumes(tmp_path: Path) -> None:
    results = tmp_path / "runs.jsonl"
    assert calibrate.pending([], 2, ["aa", "rss"]) == ["aa", "rss", "aa", "rss"]
    calibrate.append_row(results, _row("aa", "PASS"))
    calibrate.append_row(results, _row("aa", "PASS"))
    calibrate.append_row(results, _row("rss", "FAIL"))
    rows = calibrate.read_rows(results)
    assert [r["condition"] for r in rows] == ["aa", "aa", "rss"]
    assert calibrate.pending(rows, 2, ["aa", "rss"]) == ["rss"]
    assert calibrate.pending(rows, 3, ["rss", "aa"]) == ["rss", "aa", "rss"]


def test_table_counts_each_condition() -> None:
    rows = [_row("aa", "PASS", 1.0), _row("aa", "INCONCLUSIVE", 0.99), _row("cpu-filter", "FAIL", 0.86)]
    text = calibrate.table(rows)
    assert "| A/A (no change) | 2 | 0 | 1 | 1 | 0 FAIL |" in text
    assert "| CPU in the render's filter graph | 1 | 1 | 0 | 0 | >= 95 % FAIL | n/a / 0.860, n/a |" in text


def test_committed_results_are_readable_rows() -> None:
    for row in calibrate.read_rows(REPO / calibrate.RESULTS):
        assert row["condition"] in calibrate.CONDITIONS and row["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")
        assert json.dumps(row)


def test_readme_table_is_the_one_the_committed_results_give() -> None:
    """README's calibration table is generated from the JSONL (`scripts/calibrate_perf.py --readme README.md`)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert calibrate.readme_with_table(text, calibrate.read_rows(REPO / calibrate.RESULTS)) == text
    with pytest.raises(UsageError, match="needs one"):
        calibrate.readme_with_table("no markers", [])
