"""The canary calibration's pieces (montage/ops/canary/calibrate.py): the sized controls it applies, the
resumable JSONL, the table and the README block generated from it.  No servers: the controls' ASGI
wrappers run in-process on a real Starlette app, with their holds recorded instead of waited."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from montage.errors import UsageError
from montage.ops import calibration
from montage.ops.canary import calibrate, controls
from montage.ops.checks import canary as kind

from .conftest import MakeMetrics

REPO = Path(__file__).resolve().parents[3]


def _serve(text: str, paths: list[str]) -> tuple[list[int], list[tuple[str, float]]]:
    """Load ``text`` (a control's sitecustomize.py) and send ``paths`` to a Starlette app through it: each
    request's status, and each hold (path, seconds) the control asked for."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    original = Starlette.__call__
    held: list[tuple[str, float]] = []
    current = [""]

    async def sleep(seconds: float) -> None:
        held.append((current[0], seconds))

    async def send_all(app: Any) -> list[int]:
        statuses: list[int] = []
        for path in paths:
            current[0] = path
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
                sent.append(message)

            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                     "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                     "root_path": "", "headers": [], "server": ("127.0.0.1", 80),
                     "client": ("127.0.0.1", 1)}  # fmt: skip
            await app(scope, receive, send)
            statuses.append(next(m["status"] for m in sent if m["type"] == "http.response.start"))
        return statuses

    try:
        namespace: dict[str, Any] = {}
        exec(compile(text, "sitecustomize.py", "exec"), namespace)
        namespace["asyncio"] = SimpleNamespace(sleep=sleep)  # record the holds instead of waiting them
        statuses = asyncio.run(send_all(Starlette(routes=[Route("/{rest:path}", ok)])))
    finally:
        Starlette.__call__ = original  # type: ignore[method-assign]
    return statuses, held


TRAFFIC = [p for i in range(1000) for p in ([f"/v1/public/health?{i}"] + (["/metrics"] if i % 10 == 0 else []))]


def test_the_2_percent_5xx_answers_every_50th_request_and_the_selftest_control_keeps_every_40th() -> None:
    for text, share in ((controls.CALIBRATION["5xx-2pct"][1], 0.02), (controls.FIVE_XX, 0.025)):
        statuses, _ = _serve(text, TRAFFIC)
        traffic = [s for s, p in zip(statuses, TRAFFIC, strict=True) if p != "/metrics"]
        assert traffic.count(500) == round(share * len(traffic)) and set(traffic) == {200, 500}
        assert {s for s, p in zip(statuses, TRAFFIC, strict=True) if p == "/metrics"} == {200}


def test_the_shift_holds_every_response_and_the_tail_only_about_5_percent() -> None:
    statuses, held = _serve(controls.CALIBRATION["p99-shift"][1], TRAFFIC)
    assert set(statuses) == {200} and [p for p, _ in held] == TRAFFIC  # every request, /metrics included
    assert all(s >= 0 for _, s in held)
    statuses, held = _serve(controls.CALIBRATION["p99-tail"][1], TRAFFIC)
    assert set(statuses) == {200}
    assert "/metrics" not in {p for p, _ in held}
    assert 0.03 <= len(held) / 1000 <= 0.07, len(held)


def test_every_calibration_control_writes_the_candidates_overlay(tmp_path: Path) -> None:
    for name in sorted(controls.CALIBRATION):
        tree = tmp_path / name
        what = controls.write(tree, name)
        rel, text, _ = controls.CALIBRATION[name]
        assert what.startswith(f"{controls.OVERLAY}/{rel} ") and (tree / controls.OVERLAY / rel).read_text() == text
    assert set(calibrate.CONDITIONS) == {calibrate.AA, *controls.CALIBRATION}
    # phase.selftest's controls are unchanged by the calibration's variants
    assert controls.apply(tmp_path / "st", kind.Params(), "5xx").endswith("every 40th request (2.5 %)")
    assert (tmp_path / "st" / controls.OVERLAY / "sitecustomize.py").read_text() == controls.FIVE_XX


def _row(condition: str, verdict: str, ratio: float | None = 1.0, **extra: Any) -> dict[str, Any]:
    return {
        "condition": condition, "verdict": verdict, "said": "A/A" if condition == "aa" else "A/B",
        "p99_ratio": None if ratio is None else {"ratio": ratio, "low": ratio - 0.1, "high": ratio + 0.1},
        "seconds": 90.0, "load_1m": {"before": 3.0, "after": 5.0}, "nproc": 2, "slos": {}, **extra,
    }  # fmt: skip


def test_table_counts_each_condition_and_judges_aa_twice() -> None:
    rows = [
        _row("aa", "PARTIAL", 0.98, allow_aa={"verdict": "PASS", "p99": "PASS"}),
        _row("aa", "PARTIAL", 1.30, allow_aa={"verdict": "FAIL", "p99": "FAIL"}),
        _row("p99-shift", "FAIL", 1.4) | {"seconds": 110.0, "achieved_p99_ratio": 1.36},
        _row("p99-shift", "PARTIAL", 1.2) | {"load_1m": {"before": 1.0, "after": 9.0}, "achieved_p99_ratio": 1.24},
        _row("broken-import", "FAIL", None),
    ]
    text = calibrate.table(rows)
    assert (
        f"| {calibrate.LABELS['aa']} | 2 | 2 | 0 | 0 | 2 | 0 FAIL | 1.140 | n/a | 90 / 90 | 4.0 (3.0-5.0), 2 |" in text
    )
    assert f"| {calibrate.ALLOW_AA_LABEL} | 2 | 2 | 1 | 1 | 0 | 0 FAIL | 1.140 |" in text
    assert (
        f"| {calibrate.LABELS['p99-shift']} | 2 | 0 | 1 | 0 | 1 | >= 9 of 10 FAIL | 1.300 | 1.300 | 100 / 110 " in text
    )
    assert "| 4.0 (1.0-9.0), 2 |" in text
    assert f"| {calibrate.LABELS['broken-import']} | 1 | 0 | 1 | 0 | 0 | 10 of 10 FAIL | n/a |" in text
    assert "5xx" not in text.split("\n", 2)[2]  # a condition without runs has no row


def test_a_sitting_resumes_topping_each_condition_up(tmp_path: Path) -> None:
    results = tmp_path / "canary.jsonl"
    for _ in range(2):
        calibration.append_row(results, _row("p99-tail", "PARTIAL"))
    ran: list[str] = []

    def once(repo: Path, commit: str, condition: str, *, workdir: Path) -> dict[str, Any]:
        ran.append(condition)
        return _row(condition, "FAIL", allow_aa={"verdict": "FAIL", "p99": "FAIL"}) | {"commit": commit}

    rows = calibrate.calibrate(REPO, runs=3, conditions=["p99-tail"], results=results, workdir=tmp_path,
                               say=lambda _: None, once=once)  # fmt: skip
    assert ran == ["p99-tail"] and [r["verdict"] for r in rows] == ["PARTIAL", "PARTIAL", "FAIL"]
    ran.clear()
    calibrate.calibrate(REPO, runs=2, conditions=["p99-tail", "aa"], results=results, workdir=tmp_path,
                        say=lambda _: None, once=once)  # fmt: skip
    assert ran == ["aa", "aa"]  # interleaved order, only what is missing
    assert len(calibration.read_rows(results)) == 5
    assert calibrate.main(["--table", "--results", str(results)]) == 0


def test_committed_results_are_readable_rows() -> None:
    for row in calibration.read_rows(REPO / calibrate.RESULTS):
        assert row["condition"] in calibrate.CONDITIONS and row["verdict"] in calibrate.GATE
        assert row["said"] == ("A/A" if row["condition"] == calibrate.AA else "A/B")
        assert json.dumps(row)


def test_readme_table_is_the_one_the_committed_results_give() -> None:
    """README's canary calibration table is generated from the JSONL
    (`scripts/calibrate_canary.py --readme README.md`)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert calibrate.readme_with_table(text, calibration.read_rows(REPO / calibrate.RESULTS)) == text
    with pytest.raises(UsageError, match="needs one <!-- canary-calibration-table -->"):
        calibrate.readme_with_table("no markers", [])


def test_a_recorded_canary_is_evaluated_as_a_user_does_and_kept_as_one_row(
    tmp_path: Path, make_metrics: MakeMetrics
) -> None:
    """The half of a calibration run after `collect`: `evaluate` (and `--allow-aa`) as child processes on
    an A/A canary's stored samples, their verdicts checked against the in-process judgement.  The document
    is the seeded fixture's, not a committed bundle's: a re-run phase replaces its bundle (an A/A one
    was replaced by a PASS against the deployed commit, and this test then failed for no product reason)."""
    metrics = make_metrics(aa=True)
    assert metrics["comparison"]["aa"]
    (tmp_path / "canary_metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    verdicts = {"as_run": calibrate._evaluate(tmp_path / "canary_metrics.json", REPO),
                "allow_aa": calibrate._evaluate(tmp_path / "canary_metrics.json", REPO, "--allow-aa")}  # fmt: skip
    row = calibrate.row_of(metrics, "aa", "", verdicts)
    assert row["said"] == "A/A" and row["slos"]["p99_latency_ratio"] == "INCONCLUSIVE"
    assert row["verdict"] == verdicts["as_run"] != "FAIL" and row["allow_aa"]["verdict"] == verdicts["allow_aa"]
    assert row["p99_ratio"]["low"] <= row["p99_ratio"]["ratio"] <= row["p99_ratio"]["high"]
    assert row["requests"]["candidate"] == len(metrics["sides"]["candidate"]["samples"]["status"])
    assert 0.9 < row["achieved_p99_ratio"] < 1.1  # the fixture's A/A candidate: the baseline's times +-3 %
    with pytest.raises(UsageError, match="in-process"):  # a verdict the samples do not give is refused
        calibrate.row_of(metrics, "aa", "", {**verdicts, "as_run": "FAIL"})


def test_the_achieved_p99_ratio_is_the_pooled_p99_of_the_answered_pairs(make_metrics: MakeMetrics) -> None:
    """The size a condition reached in a run, measured without the canary's window rule."""
    m = make_metrics(n=1000, slowdown=1.3)
    achieved = calibrate.achieved_p99_ratio(m)
    assert achieved is not None and 1.25 < achieved < 1.35
    m["sides"]["candidate"]["samples"]["status"][:950] = [0] * 950  # 50 pairs left: too few to say
    assert calibrate.achieved_p99_ratio(m) is None
