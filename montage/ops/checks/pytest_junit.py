"""``pytest``: run pytest with ``--junitxml`` into the evidence; totals come from the JUnit XML.

PASS needs at least ``min_tests`` tests, no failures and no errors.  Zero tests is FAIL (nothing
was tested); a missing or unreadable JUnit file is ERROR.  A skipped test was not measured: the
check is INCONCLUSIVE unless every skipped test is listed in ``allowed_skips`` with a reason (its
JUnit id ``classname::name``, or a pattern where `*` and `?` are wildcards, e.g. the cgroup v2 tests on a v1 host).
Evidence: ``junit.xml``, ``pytest_output.txt``, ``pytest.json`` (exit code) and ``pytest_summary.txt``
(the totals, the failing and the skipped tests with pytest's reason).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from pydantic import Field

from montage.core.proc import run_logged
from montage.ops.checks import _controls as _c
from montage.ops.checks.base import (
    CheckContext,
    EvidenceError,
    Judgement,
    KindParams,
    NegativeControl,
    Verdict,
    error_judgement,
    present,
    read_json,
)

EVIDENCE = ["junit.xml", "pytest_output.txt", "pytest.json", "pytest_summary.txt"]


class AllowedSkip(KindParams):
    test: str = Field(min_length=1, description="JUnit id `classname::name`; `*` and `?` are wildcards")
    reason: str = Field(min_length=1, description="why skipping it here still proves the phase")


class Params(KindParams):
    args: list[str] = Field(default_factory=list, description="pytest arguments, e.g. ['-m', 'not slow', 'tests']")
    min_tests: int = Field(1, ge=1, description="fewer tests than this is not a PASS")
    timeout_s: float = Field(3600, gt=0, le=86400)
    env: dict[str, str] = Field(default_factory=dict)
    allowed_skips: list[AllowedSkip] = Field(
        default_factory=list, description="skipped tests that do not make the check INCONCLUSIVE (each with a reason)"
    )


def _matches(test_id: str, pattern: str) -> bool:
    # Only `*` and `?` are wildcards: brackets are literal, as in a parametrised id `test_x[v1]`.
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, test_id) is not None


def _allowed(test_id: str, allowed: list[AllowedSkip]) -> bool:
    return any(_matches(test_id, a.test) for a in allowed)


def totals(junit: Path) -> dict[str, Any]:
    """Totals and failing test ids from a JUnit XML file."""
    try:
        root = ET.parse(junit).getroot()
    except FileNotFoundError:
        raise EvidenceError("junit.xml is missing: pytest did not write a report") from None
    except ET.ParseError as exc:
        raise EvidenceError(f"junit.xml is not valid XML ({exc})") from None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    skipped: dict[str, str] = {}
    for suite in suites:
        for key in out:
            out[key] += int(suite.get(key, "0"))
        for case in suite.iter("testcase"):
            test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
            if case.find("failure") is not None or case.find("error") is not None:
                failing.append(test_id)
            elif (skip := case.find("skipped")) is not None:
                skipped[test_id] = (skip.get("message") or "").strip()
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    return {**out, "failing": sorted(failing), "skipped_tests": dict(sorted(skipped.items()))}


def _last_line(evidence_dir: Path) -> str:
    try:
        lines = (evidence_dir / "pytest_output.txt").read_text(encoding="utf-8", errors="replace").split("\n")
    except OSError:
        return ""
    last = [line.strip() for line in lines if line.strip()][-1:]
    return f": {last[0][:200]}" if last else ""


def summary_text(t: dict[str, Any], exit_code: int) -> str:
    lines = [
        f"tests={t['tests']} passed={t['passed']} failed={t['failures']} errors={t['errors']} "
        f"skipped={t['skipped']} exit_code={exit_code}"
    ]
    lines += [f"FAILED {name}" for name in t["failing"]]
    lines += [f"SKIPPED {name}: {why}" for name, why in t["skipped_tests"].items()]
    return "\n".join(lines) + "\n"


def run(params: Params, ctx: CheckContext) -> Judgement:
    junit = ctx.evidence_dir / "junit.xml"
    argv = ["{python}", "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}", *params.args]
    if ctx.fail_fast:
        argv.insert(3, "--exitfirst")
    done = run_logged(argv, ctx.evidence_dir / "pytest_output.txt", ctx.repo_root, params.timeout_s, params.env)
    ctx.write_json("pytest.json", {"argv": done.argv, "exit_code": done.returncode, "timed_out": done.timed_out})
    try:
        ctx.write_text("pytest_summary.txt", summary_text(totals(junit), done.returncode))
    except EvidenceError as exc:
        ctx.write_text("pytest_summary.txt", f"no totals: {exc}; exit_code={done.returncode}\n")
    return rejudge(params, ctx.evidence_dir)


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    expected = f">= {params.min_tests} test(s), 0 failed, 0 errors, no skip outside allowed_skips"
    evidence = present(evidence_dir, EVIDENCE)
    try:
        record = read_json(evidence_dir / "pytest.json")
    except EvidenceError as exc:
        return error_judgement(expected, str(exc), evidence)
    rc = int(record["exit_code"])
    try:
        t = totals(evidence_dir / "junit.xml")
    except EvidenceError as exc:
        how = "timed out" if record.get("timed_out") else f"exit code {rc}"
        return error_judgement(expected, f"{exc} ({how})", evidence)
    value = {k: t[k] for k in ("tests", "passed", "failures", "errors", "skipped")} | {"exit_code": rc}
    if t["failures"] or t["errors"]:
        first = ", ".join(t["failing"][:3])
        verdict, reason = Verdict.FAIL, f"{t['failures']} failed, {t['errors']} errors of {t['tests']}: {first}"
    elif t["tests"] < params.min_tests:
        verdict, reason = Verdict.FAIL, f"only {t['tests']} test(s) ran; expected at least {params.min_tests}"
        if rc != 0:
            reason += f" (pytest exited {rc}{_last_line(evidence_dir)})"
    elif rc != 0:
        verdict, reason = Verdict.ERROR, f"pytest exited {rc} although the report shows no failures"
    elif unmeasured := [name for name in t["skipped_tests"] if not _allowed(name, params.allowed_skips)]:
        # A skip is "not measured", not a pass (phase 0 once passed with 13 tests skipped for lack of ffmpeg).
        first = "; ".join(f"{name} ({t['skipped_tests'][name] or 'no reason given'})" for name in unmeasured[:3])
        verdict = Verdict.INCONCLUSIVE
        reason = f"{len(unmeasured)} test(s) skipped and not in allowed_skips, so not measured: {first}"
    else:
        allowed = " (all in allowed_skips)" if t["skipped"] else ""
        verdict, reason = Verdict.PASS, f"{t['passed']} passed, {t['skipped']} skipped{allowed} of {t['tests']}"
    return Judgement(verdict=verdict, value=value, expected=expected, reason=reason, evidence=evidence)


CONTROLS = (
    NegativeControl("failing-test", "a failing test file where the check collects", _c.failing_test, fast=True),
)
