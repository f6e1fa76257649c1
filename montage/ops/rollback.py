"""``phase.rollback N``: print the plan; with ``--yes`` execute it, recording every step.

Records go to ``proofs/phase-NN/rollbacks/<stamp>/`` (``rollback.json`` + one log per step),
written to a temporary directory and renamed when done, also when a step fails.  The first failing
step stops the rollback (exit 1).  ``set_flag`` runs ``montage flags set NAME VALUE``.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from montage.core.files import canonical_json
from montage.core.proc import run_logged
from montage.errors import ExitCode, ToolMissing
from montage.ops import bundle as bundles
from montage.ops.model import Phase, RollbackStep

DEFAULT_FLAG_TIMEOUT_S = 60.0


def describe(step: RollbackStep) -> str:
    if step.set_flag is not None:
        return f"set flag {step.set_flag.name}={canonical_json(step.set_flag.value)} (montage flags set)"
    return " ".join(step.argv())


def plan(phase: Phase) -> list[dict[str, Any]]:
    return [{"id": s.id, "action": describe(s), "argv": s.argv(), "description": s.description} for s in phase.rollback]


def execute(
    phase: Phase, repo_root: Path, layout: bundles.ProofsLayout, out: Callable[[str], None]
) -> tuple[int, dict[str, Any]]:
    """Run every rollback step in order; return the exit code and the record."""
    parent = layout.rollbacks(phase.id)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / (bundles.TMP_PREFIX + secrets.token_hex(6))
    tmp.mkdir()
    record: dict[str, Any] = {"phase_id": phase.id, "started_at": bundles.utc_now(), "steps": [], "ok": False}
    code = ExitCode.OK
    try:
        for step in phase.rollback:
            rel = f"{step.id}.log"
            timeout = step.timeout_s or DEFAULT_FLAG_TIMEOUT_S
            out(f"rollback step {step.id}: {describe(step)}")
            try:
                done = run_logged(step.argv(), tmp / rel, repo_root, timeout)
            except ToolMissing as exc:
                (tmp / rel).write_text(f"{exc}\n", encoding="utf-8")
                record["steps"].append({"id": step.id, "argv": step.argv(), "exit_code": None, "log": rel})
                out(f"  failed: {exc}")
                code = ExitCode.FAIL
                break
            record["steps"].append(
                {
                    "id": step.id,
                    "argv": done.argv,
                    "exit_code": done.returncode,
                    "timed_out": done.timed_out,
                    "duration_s": round(done.duration_s, 3),
                    "log": rel,
                }
            )
            if done.returncode != 0:
                out(f"  failed with exit code {done.returncode}: {done.tail(3)}")
                code = ExitCode.FAIL
                break
            out("  ok")
        record["ok"] = code == ExitCode.OK
        record["finished_at"] = bundles.utc_now()
        (tmp / "rollback.json").write_text(canonical_json(record, indent=2) + "\n", encoding="utf-8")
        final = parent / bundles.new_bundle_name()
        os.replace(tmp, final)
        record["record"] = str(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return code, record
