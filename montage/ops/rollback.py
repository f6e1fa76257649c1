"""``phase.rollback N``: print the plan; with ``--yes`` execute it, recording every step.

Records go to ``proofs/phase-NN/rollbacks/<stamp>/`` (``rollback.json`` + one log per step),
written to a temporary directory and renamed when done, also when a step fails.  The first failing
step stops the rollback (exit 1; a refused ``revert``: exit 6).  ``set_flag`` runs
``montage flags set NAME VALUE``.

``revert: bundle_commit`` reverts the commit the phase's PASS bundle (``proofs/phase-NN/latest``)
recorded, never "whatever HEAD is".  It refuses, naming why, when that bundle is missing, does not
verify, is not a PASS, was forced or recorded a dirty tree; when its commit is not in this clone (a
shallow clone) or not in HEAD's history; when it is a merge; when it changes nothing outside the
bundles (a commit that only records earlier phases' bundles, as when phases run back to back); when
a dependency's PASS bundle was already judged on that commit or a later one, or on a commit with the
same code (then the commit is not this phase's change: successive gating means a phase's change
lands after its dependencies passed); or when the work tree has uncommitted changes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from montage.core import git as core_git
from montage.core.files import canonical_json
from montage.core.proc import run_logged
from montage.errors import ExitCode, MontageError, ToolMissing
from montage.ops import bundle as bundles
from montage.ops.model import Phase, RollbackStep

DEFAULT_FLAG_TIMEOUT_S = 60.0
DEFAULT_REVERT_TIMEOUT_S = 120.0


class RevertRefused(MontageError):
    """A ``revert: bundle_commit`` step cannot name the phase's own change; the message says why."""

    exit_code = ExitCode.REFUSED


def describe(step: RollbackStep, target: str | None = None) -> str:
    if step.set_flag is not None:
        return f"set flag {step.set_flag.name}={canonical_json(step.set_flag.value)} (montage flags set)"
    if step.revert is not None:
        return f"git revert --no-edit {target or 'COMMIT'} (the commit this phase's PASS bundle recorded)"
    return " ".join(step.argv())


def plan(
    phase: Phase, repo_root: Path | None = None, layout: bundles.ProofsLayout | None = None
) -> list[dict[str, Any]]:
    """The steps as they would run; a ``revert`` names its commit (or why it would be refused) when
    ``repo_root`` and ``layout`` are given."""
    out = []
    for s in phase.rollback:
        entry: dict[str, Any] = {"id": s.id, "action": describe(s), "argv": s.argv(), "description": s.description}
        if s.revert is not None and repo_root is not None and layout is not None:
            try:
                commit = revert_target(phase, repo_root, layout)
            except RevertRefused as exc:
                entry["action"] = describe(s) + f" -- REFUSED: {exc}"
                entry["refused"] = str(exc)
            else:
                entry["action"], entry["argv"] = describe(s, commit), ["git", "revert", "--no-edit", commit]
        out.append(entry)
    return out


def _passed_commit(phase_id: int, repo_root: Path, layout: bundles.ProofsLayout) -> tuple[str, str]:
    """(commit, display path) of phase ``phase_id``'s verified, unforced, clean PASS bundle."""
    from montage.ops.status import CACHE_DIR, verify_bundle
    from montage.ops.verdict import Verdict

    latest = layout.latest(phase_id)
    shown = _display(latest, repo_root)
    if not latest.is_dir():
        raise RevertRefused(f"phase {phase_id} has no PASS bundle ({shown}), so nothing records which commit it landed")
    problems = verify_bundle(latest, phase_id=phase_id, mode="run", cache=layout.root / CACHE_DIR)
    if problems:
        raise RevertRefused(f"phase {phase_id}'s bundle {shown} does not verify ({problems[0]})")
    manifest = bundles.load_manifest(latest)
    if manifest.verdict is not Verdict.PASS or manifest.forced:
        what = "was forced (--force)" if manifest.forced else f"is {manifest.verdict.value}, not PASS"
        raise RevertRefused(f"phase {phase_id}'s bundle {shown} {what}")
    if not manifest.git.commit or manifest.git.dirty is not False:
        state = "no commit" if not manifest.git.commit else "a dirty work tree"
        state = "no git state" if manifest.git.dirty is None and manifest.git.commit else state
        raise RevertRefused(f"phase {phase_id}'s bundle {shown} recorded {state}: the judged tree is not one commit")
    return manifest.git.commit, shown


def _display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def revert_target(phase: Phase, repo_root: Path, layout: bundles.ProofsLayout) -> str:
    """The commit ``revert: bundle_commit`` reverts; :class:`RevertRefused` saying why there is none."""
    commit, shown = _passed_commit(phase.id, repo_root, layout)
    short = commit[:12]
    try:
        core_git.resolve_commit(repo_root, commit)
    except core_git.GitError:
        raise RevertRefused(
            f"commit {short} recorded by {shown} is not in this clone (a shallow clone?); fetch it first"
        ) from None
    if core_git.try_git(repo_root, "merge-base", "--is-ancestor", commit, "HEAD") is None:
        raise RevertRefused(f"commit {short} recorded by {shown} is not in HEAD's history: there is nothing to revert")
    parents = (core_git.try_git(repo_root, "rev-list", "--parents", "-n", "1", commit) or "").split()[1:]
    if len(parents) > 1:
        raise RevertRefused(f"commit {short} recorded by {shown} is a merge; choose its mainline and revert by hand")
    if parents and not _code_changes(repo_root, parents[0], commit, layout):
        raise RevertRefused(
            f"commit {short} recorded by {shown} changes nothing outside the bundles (it records earlier phases' "
            f"bundles), so reverting it would undo no code; the change phase {phase.id} gated landed in an earlier "
            "commit: revert that by hand, or re-run the phase right after landing its change"
        )
    for dep in phase.deps:
        try:
            dep_commit, dep_shown = _passed_commit(dep, repo_root, layout)
        except RevertRefused:
            continue  # without a usable dependency bundle there is nothing to compare with
        later = core_git.try_git(repo_root, "merge-base", "--is-ancestor", commit, dep_commit) is not None
        if not later and not _code_changes(repo_root, dep_commit, commit, layout):
            raise RevertRefused(
                f"commit {short} recorded by {shown} is not phase {phase.id}'s own change: its dependency phase "
                f"{dep} was judged on {dep_commit[:12]} ({dep_shown}) and nothing outside the bundles changed "
                f"between the two, so phase {phase.id} gated no change of its own; revert the change by hand"
            )
        if later:
            same = "the same commit" if dep_commit == commit else f"{dep_commit[:12]}, a later commit"
            raise RevertRefused(
                f"commit {short} recorded by {shown} is not phase {phase.id}'s own change: its dependency phase "
                f"{dep} was already judged on {same} ({dep_shown}); re-run phase {phase.id} right after landing "
                "its change so the bundle isolates it, or revert the change by hand"
            )
    if core_git.repo_state(repo_root, layout.root).dirty:
        raise RevertRefused("the work tree has uncommitted changes to tracked files; commit or stash them first")
    return commit


def _proofs_pathspec(repo_root: Path, layout: bundles.ProofsLayout) -> list[str]:
    """``git diff`` pathspecs for everything except the bundles (when they live in the repository)."""
    try:
        proofs = layout.root.resolve().relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        return ["."]
    return [".", f":(exclude){proofs}"]


def _code_changes(repo_root: Path, old: str, new: str, layout: bundles.ProofsLayout) -> list[str]:
    """Files outside the bundles that differ between commits ``old`` and ``new``."""
    pathspec = _proofs_pathspec(repo_root, layout)
    return core_git.git(repo_root, "diff", "--name-only", old, new, "--", *pathspec).split()


def _revert(
    step: RollbackStep, phase: Phase, repo_root: Path, layout: bundles.ProofsLayout, log: Path,
    out: Callable[[str], None],
) -> tuple[ExitCode, dict[str, Any]]:  # fmt: skip
    """One ``revert: bundle_commit`` step through :mod:`montage.core.git`: (exit code, record entry)."""
    entry: dict[str, Any] = {"id": step.id, "argv": step.argv(), "exit_code": None, "log": log.name}
    try:
        commit = revert_target(phase, repo_root, layout)
    except RevertRefused as exc:
        log.write_text(f"refused: {exc}\n", encoding="utf-8")
        out(f"rollback step {step.id}: {describe(step)}\n  REFUSED: {exc}")
        return ExitCode.REFUSED, {**entry, "refused": str(exc)}
    entry["argv"] = [*step.argv()[:-1], commit]
    out(f"rollback step {step.id}: {describe(step, commit)}")
    started = time.monotonic()
    try:
        stdout = _revert_code(repo_root, commit, layout, step.timeout_s or DEFAULT_REVERT_TIMEOUT_S)
    except (core_git.GitError, ToolMissing) as exc:
        log.write_text(f"{exc}\n", encoding="utf-8")
        out(f"  failed: {exc}")
        core_git.try_git(repo_root, "revert", "--abort")  # a conflicted revert leaves nothing half-done
        return ExitCode.FAIL, {**entry, "exit_code": 1, "duration_s": round(time.monotonic() - started, 3)}
    log.write_text(stdout + "\n", encoding="utf-8")
    out(f"  ok: reverted {commit[:12]} as {core_git.git(repo_root, 'rev-parse', '--short=12', 'HEAD')}")
    return ExitCode.OK, {**entry, "exit_code": 0, "duration_s": round(time.monotonic() - started, 3)}


def _revert_code(repo_root: Path, commit: str, layout: bundles.ProofsLayout, timeout_s: float) -> str:
    """Revert ``commit``'s change but keep the proof record as HEAD has it.

    The commit that carries a phase's change usually also carries the bundles and history lines
    published before it (``proofs/``); a rollback undoes the code, never the evidence, and those
    files are exactly where a plain ``git revert`` conflicts with every later bundle.  Raises
    :class:`GitError` when something outside ``proofs/`` conflicts or nothing outside it changes.
    """
    try:
        proofs = layout.root.resolve().relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        proofs = None  # bundles kept outside the repository: nothing of theirs is in the commit
    conflicted = core_git.try_git(repo_root, "revert", "--no-commit", commit, timeout_s=timeout_s) is None
    if proofs is not None and core_git.try_git(repo_root, "cat-file", "-e", f"HEAD:{proofs}") is not None:
        core_git.git(repo_root, "checkout", "HEAD", "--", proofs, timeout_s=timeout_s)
    left = core_git.git(repo_root, "diff", "--name-only", "--diff-filter=U")
    if left:
        raise core_git.GitError(f"git revert {commit[:12]} conflicts outside {proofs or 'the bundles'}: {left}")
    if conflicted and not core_git.git(repo_root, "diff", "--cached", "--name-only"):
        raise core_git.GitError(f"git revert {commit[:12]} failed and left nothing to commit")
    if not core_git.git(repo_root, "diff", "--cached", "--name-only"):
        raise core_git.GitError(f"commit {commit[:12]} changes nothing outside {proofs}: there is no code to revert")
    return core_git.git(repo_root, "commit", "--no-edit", "-q", timeout_s=timeout_s)


def execute(
    phase: Phase,
    repo_root: Path,
    layout: bundles.ProofsLayout,
    out: Callable[[str], None],
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
            if step.revert is not None:
                step_code, entry = _revert(step, phase, repo_root, layout, tmp / rel, out)
                record["steps"].append(entry)
                if step_code != ExitCode.OK:
                    code = step_code
                    break
                continue
            argv = step.argv()
            timeout = step.timeout_s or DEFAULT_FLAG_TIMEOUT_S
            out(f"rollback step {step.id}: {describe(step)}")
            try:
                done = run_logged(argv, tmp / rel, repo_root, timeout)
            except ToolMissing as exc:
                (tmp / rel).write_text(f"{exc}\n", encoding="utf-8")
                record["steps"].append({"id": step.id, "argv": argv, "exit_code": None, "log": rel})
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
