"""Rollback rehearsal (``phase.selftest``): run a phase's rollback plan in a throwaway worktree and
check that what each step claims to change changed.

The steps run in order in one worktree of HEAD, with their own flags file, an SQLite database
migrated to head and no ``.env`` (nothing of the machine's own state is touched), exactly as
``phase.rollback N --yes`` runs them (:mod:`montage.ops.rollback`). Each step gets one of:

* ``acted``: it ran and the change it claims was observed;
* ``refused``: it refused, naming why (a ``revert`` with no change of the phase's own to undo): an
  honest answer, shown with the reason, not a failure;
* ``failed``: it did not run, or ran and changed nothing it claims to change: a rollback that does
  not act, which fails the self-test.

What is observed, per kind of step:

* ``set_flag``: the component the flag names, driven for real in a child process of the worktree
  (:mod:`montage.ops.rehearsal_observers`: the settings loader, the split-mode admin port, the reaper, the perf
  session), before and after: the step acted when the behaviour changed. A flag without an
  observer cannot be shown to act and fails.
* ``revert``: the files the revert commit changed are exactly the files the recorded commit
  changed outside the bundles, and every one of them that no later commit touched is back to its
  content before that commit.
* ``run`` / ``invoke``: exit 0 and a change in the state the rehearsal can see (the database's
  Alembic revision, the flags file); exit 0 with nothing changed is a step that does not act.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from montage.core import git as core_git
from montage.core import proc as core_proc
from montage.errors import ToolMissing
from montage.ops import bundle as bundles
from montage.ops.model import Phase, RollbackStep

STEP_TIMEOUT_S = 600.0
OBSERVE_TIMEOUT_S = 120.0
ACTED, REFUSED, FAILED = "acted", "refused", "failed"
CLEARED = ("MONTAGE_",)  # the caller's own settings never reach the rehearsal (its env sets what it needs)


@dataclass(frozen=True)
class Rehearsal:
    """One rollback step as the rehearsal ran it."""

    step: str
    action: str
    result: str  # ACTED | REFUSED | FAILED
    observed: str  # what was seen (before -> after), or why it was refused / failed
    log: str  # the step's log, relative to the bundle


# --- what a flag's component does, observed in the worktree's own code ----------------------------

OBSERVERS_FILE = Path(__file__).with_name("rehearsal_observers.py")


def observers() -> dict[str, str]:
    """Flag name -> the observer function's name in :data:`OBSERVERS_FILE`."""
    from montage.ops import rehearsal_observers

    return dict(rehearsal_observers.OBSERVERS)


def _observe(tree: Path, name: str, flags_file: Path, env: dict[str, str]) -> str:
    """The observer of flag ``name``, this toolkit's code, driving the worktree's own components: the
    child runs the observers' source with the worktree first on ``sys.path`` (its commit need not
    have this module at all)."""
    call = f"\nprint({observers()[name]}(__import__('pathlib').Path({str(flags_file)!r})))\n"
    argv = [sys.executable, "-c", OBSERVERS_FILE.read_text(encoding="utf-8") + call]
    done = core_proc.run(argv, timeout_s=OBSERVE_TIMEOUT_S, cwd=tree, env=env, unset_prefixes=CLEARED)
    if done.returncode != 0:
        return f"observer failed (exit {done.returncode}): {done.tail(3)}"
    return done.stdout.strip()


# --- state a run step may change -----------------------------------------------------------------


def _revision(db: Path) -> str:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error as exc:
        return f"unreadable ({exc})"
    return ",".join(sorted(r[0] for r in rows)) or "base"


def _state(db: Path, flags_file: Path) -> str:
    flags = flags_file.read_text(encoding="utf-8").strip() if flags_file.is_file() else "{}"
    return f"database revision {_revision(db)}, flags {flags}"


def _run_logged(step: RollbackStep, log: Path, tree: Path, env: dict[str, str]) -> core_proc.Completed:
    return core_proc.run_logged(
        step.argv(), log, tree, step.timeout_s or STEP_TIMEOUT_S, env=env, unset_prefixes=CLEARED
    )


# --- the rehearsal -------------------------------------------------------------------------------


def _flag_step(step: RollbackStep, tree: Path, scratch: Path, env: dict[str, str], log: Path) -> tuple[str, str]:
    assert step.set_flag is not None
    name = step.set_flag.name
    if name not in observers():
        return FAILED, f"no observer for flag {name}: the rehearsal cannot show that any component reads it"
    flags_file = scratch / "flags.json"
    before = _observe(tree, name, flags_file, env)
    done = core_proc.run_logged(
        step.argv(), log, tree, step.timeout_s or STEP_TIMEOUT_S, env=env, unset_prefixes=CLEARED
    )
    if done.returncode != 0:
        return FAILED, f"`{' '.join(done.argv[2:])}` exited {done.returncode}: {done.tail(2)}"
    after = _observe(tree, name, flags_file, env)
    if after == before or after.startswith("observer failed"):
        return FAILED, f"the component did not change: {before} -> {after}"
    return ACTED, f"{before} -> {after}"


def _sync_bundles(phase: Phase, proofs: Path, tree: Path) -> bundles.ProofsLayout:
    """The caller's published bundles of the phase and its dependencies, copied into the worktree (its
    committed ones may be older): the revert must name the commit ``phase.rollback`` would name."""
    import shutil

    source, layout = bundles.ProofsLayout(proofs), bundles.ProofsLayout(tree / "proofs")
    for pid in (phase.id, *phase.deps):
        if source.latest(pid).is_dir():
            shutil.rmtree(layout.latest(pid), ignore_errors=True)
            shutil.copytree(source.latest(pid), layout.latest(pid), symlinks=True)
    return layout


def _revert_step(phase: Phase, tree: Path, proofs: Path, log: Path) -> tuple[str, str]:
    from montage.ops import rollback

    layout = _sync_bundles(phase, proofs, tree)
    try:
        commit = rollback.revert_target(phase, tree, layout)
    except rollback.RevertRefused as exc:
        log.write_text(f"refused: {exc}\n", encoding="utf-8")
        return REFUSED, str(exc)
    before = core_git.git(tree, "rev-parse", "HEAD")
    try:
        log.write_text(rollback._revert_code(tree, commit, layout, STEP_TIMEOUT_S) + "\n", encoding="utf-8")
    except (core_git.GitError, ToolMissing) as exc:
        log.write_text(f"{exc}\n", encoding="utf-8")
        return FAILED, f"git revert {commit[:12]} failed: {exc}"
    claimed = set(rollback._code_changes(tree, f"{commit}^", commit, layout))
    changed = set(core_git.git(tree, "diff", "--name-only", before, "HEAD").split())
    if changed != claimed:
        return FAILED, (f"the revert of {commit[:12]} changed {sorted(changed)}, the commit changed {sorted(claimed)} "
                        "outside the bundles")  # fmt: skip
    untouched = [
        f for f in sorted(claimed) if not core_git.git(tree, "log", "--format=%h", f"{commit}..{before}", "--", f)
    ]
    back = [
        f for f in untouched if core_git.try_git(tree, "diff", "--quiet", f"{commit}^", "HEAD", "--", f) is not None
    ]
    if back != untouched:
        return FAILED, f"after the revert of {commit[:12]}, {sorted(set(untouched) - set(back))} differ from before it"
    return ACTED, (f"reverted {commit[:12]}: {len(claimed)} file(s) outside the bundles, {len(back)} of them untouched "
                   "since and back to their content before it")  # fmt: skip


def _run_step(step: RollbackStep, tree: Path, scratch: Path, env: dict[str, str], log: Path) -> tuple[str, str]:
    db, flags_file = scratch / "montage.db", scratch / "flags.json"
    before = _state(db, flags_file)
    try:
        done = core_proc.run_logged(
            step.argv(), log, tree, step.timeout_s or STEP_TIMEOUT_S, env=env, unset_prefixes=CLEARED
        )
    except ToolMissing as exc:
        return FAILED, str(exc)
    if done.returncode != 0 or done.timed_out:
        return FAILED, f"exit {done.returncode}{' (timed out)' if done.timed_out else ''}: {done.tail(2)}"
    after = _state(db, flags_file)
    if after == before:
        return FAILED, f"exit 0 but nothing the rehearsal observes changed ({before})"
    return ACTED, f"{before} -> {after}"


def rehearse(
    phase: Phase, repo: Path, logs: Path, out: Callable[[str], None] = print, proofs: Path | None = None
) -> list[Rehearsal]:
    """Run ``phase``'s rollback in a throwaway worktree of HEAD; logs go to ``logs`` (created).

    ``proofs``: the bundles a ``revert`` reads (default ``repo/proofs``), as ``phase.rollback`` would."""
    from montage.db import migrate
    from montage.ops.rollback import describe

    done: list[Rehearsal] = []
    if not phase.rollback:
        return done
    logs.mkdir(parents=True, exist_ok=True)
    with core_git.temporary_worktree(repo, "HEAD", prefix="montage-rehearsal-") as worktree:
        tree = worktree.path
        scratch = tree.parent / "scratch"
        scratch.mkdir()
        url = f"sqlite+aiosqlite:///{scratch / 'montage.db'}"
        migrate.upgrade(url)
        env = {"MONTAGE_OPS__FLAGS_FILE": str(scratch / "flags.json"), "MONTAGE_DB__URL": url,
               "MONTAGE_DATA_DIR": str(scratch / "data"), "MONTAGE_ENV_FILE": str(scratch / "none.env"),
               "MONTAGE_SECRETS_DIR": "", "PYTHONPATH": str(tree)}  # fmt: skip
        for step in phase.rollback:
            log = logs / f"{step.id}.log"
            if step.revert is not None:
                result, observed = _revert_step(phase, tree, proofs if proofs is not None else repo / "proofs", log)
            elif step.set_flag is not None:
                result, observed = _flag_step(step, tree, scratch, env, log)
            else:
                result, observed = _run_step(step, tree, scratch, env, log)
            entry = Rehearsal(step.id, describe(step), result, observed, f"{logs.name}/{log.name}")
            out(f"  rollback {step.id} [{entry.action}]: {result.upper()} - {observed[:200]}")
            done.append(entry)
            if result == FAILED:
                break  # like phase.rollback: the first failing step stops the plan
    return done


def reasons(rehearsals: Sequence[Rehearsal], phase_has_rollback: bool) -> tuple[bool, list[str]]:
    """(some step failed, the reasons to record): a pure function of the recorded rehearsals."""
    if not phase_has_rollback:
        return False, ["the phase has no rollback to rehearse"]
    failed = [r for r in rehearsals if r.result == FAILED]
    out = [f"rollback step {r.step} does not act: {r.observed}" for r in failed]
    out += [f"rollback step {r.step} refuses: {r.observed}" for r in rehearsals if r.result == REFUSED]
    return bool(failed), out
