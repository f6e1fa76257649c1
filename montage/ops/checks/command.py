"""``command``: run an argv; PASS when the exit code is as expected (and the output matches a pattern).

Evidence: ``command.json`` (argv, exit code, timing) and ``output.txt`` (stdout+stderr).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

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
    read_json,
)


class Params(KindParams):
    argv: list[str] = Field(min_length=1, description="the command; {python} is the current interpreter")
    expect_exit: int = Field(0, description="the exit code that passes")
    output_pattern: str | None = Field(None, description="a regular expression the output must match")
    timeout_s: float = Field(600, gt=0, le=86400)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("output_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


def run(params: Params, ctx: CheckContext) -> Judgement:
    done = run_logged(params.argv, ctx.evidence_dir / "output.txt", ctx.repo_root, params.timeout_s, params.env)
    ctx.write_json(
        "command.json",
        {"argv": done.argv, "exit_code": done.returncode, "timed_out": done.timed_out, "duration_s": done.duration_s},
    )
    return rejudge(params, ctx.evidence_dir)


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    expected = f"exit code {params.expect_exit}" + (
        f" and output matching /{params.output_pattern}/" if params.output_pattern else ""
    )
    evidence = ["command.json", "output.txt"]
    try:
        record = read_json(evidence_dir / "command.json")
        output = (evidence_dir / "output.txt").read_text(encoding="utf-8", errors="replace")
    except (EvidenceError, OSError) as exc:
        return error_judgement(expected, str(exc), evidence)
    rc = int(record["exit_code"])
    if record.get("timed_out"):
        return Judgement(
            verdict=Verdict.FAIL,
            value={"exit_code": rc},
            expected=expected,
            reason=f"timed out after {params.timeout_s:g}s",
            evidence=evidence,
        )
    matched = None
    if params.output_pattern is not None:
        matched = re.search(params.output_pattern, output, re.MULTILINE) is not None
    ok = rc == params.expect_exit and matched is not False
    value = {"exit_code": rc, "output_matched": matched}
    if ok:
        reason = f"exit code {rc}" + (" and the output matched" if matched else "")
    elif rc != params.expect_exit:
        last = output.strip().splitlines()[-1:]
        tail = f"; last output line: {last[0][:200]}" if last else "; no output"
        reason = f"exit code {rc}, expected {params.expect_exit}{tail}"
    else:
        reason = f"exit code {rc} but the output does not match /{params.output_pattern}/"
    return Judgement(
        verdict=Verdict.PASS if ok else Verdict.FAIL, value=value, expected=expected, reason=reason, evidence=evidence
    )


CONTROLS = (
    NegativeControl("silent", "the command's entry point prints nothing, exits wrong", _c.silent_command, fast=True),
)
