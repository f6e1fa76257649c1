"""The load-test script's arithmetic, and one short real run on SQLite."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from montage.service.loadtest import cli, percentile


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))


def test_bad_rates_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(["--rates", "fast"])
    assert exc.value.code == 2 and "--rates" in capsys.readouterr().err


@pytest.mark.slow
def test_short_sqlite_run_prints_and_writes_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "load.json"
    assert cli(["--backend", "sqlite", "--rates", "10", "--seconds", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["scenario"], r["sent"], r["errors"]) for r in rows] == [("status", 10, 0), ("submit", 10, 0)]
    assert all(r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in rows)
    assert "| sqlite | status | 10 |" in capsys.readouterr().out
