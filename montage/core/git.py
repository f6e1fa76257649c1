"""git: one wrapper with typed errors, the repository state, and temporary worktrees that clean up.

"Dirty" has one definition here: a tracked file differs from HEAD (in the index or the work tree),
untracked files do not count, and neither do proof bundles under ``proofs/`` (committing a bundle
replaces files there; that must not make the run that wrote it dirty).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from montage.core import proc
from montage.errors import ToolMissing, UsageError

GIT_TIMEOUT_S = 120.0
PROOFS_DIR = "proofs"
# The lock reason marks a worktree as ours and names its owner, so a later run can tell a leftover of
# a crashed run (owner gone) from a worktree another live run is using.
_LOCK_PREFIX = "montage temporary worktree, owner pid "
_LOCK_RE = re.compile(re.escape(_LOCK_PREFIX) + r"(\d+)")


class GitError(UsageError):
    """A git command failed; the message names the command, the repository and git's stderr."""


@dataclass(frozen=True)
class RepoState:
    """HEAD and whether tracked files differ from it; None when ``repo`` is not a git work tree."""

    commit: str | None
    dirty: bool | None


@dataclass(frozen=True)
class Worktree:
    path: Path
    commit: str


def git(repo: Path, *args: str, timeout_s: float = GIT_TIMEOUT_S) -> str:
    """Run ``git -C repo ARGS``; return stdout without the trailing newline.

    Raises :class:`ToolMissing` when git is not installed and :class:`GitError` on a non-zero exit
    or a timeout.
    """
    try:
        done = proc.run(["git", "-C", str(repo), *args], timeout_s=timeout_s)
    except ToolMissing:
        raise ToolMissing("git is not installed or not on PATH.", hint="Install it with: apt-get install git") from None
    if done.timed_out:
        raise GitError(f"git {' '.join(args)} did not finish within {timeout_s:g} s in {repo}.")
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {repo} (exit {done.returncode}): {done.tail(8)[-800:]}")
    return done.stdout.rstrip("\n")


def try_git(repo: Path, *args: str, timeout_s: float = GIT_TIMEOUT_S) -> str | None:
    """:func:`git`, or None when git is missing or the command fails (for informational records)."""
    try:
        return git(repo, *args, timeout_s=timeout_s)
    except (ToolMissing, GitError):
        return None


def repo_files(repo: Path, *pathspec: str, timeout_s: float = GIT_TIMEOUT_S) -> list[str] | None:
    """Tracked plus untracked-not-ignored files (matching ``pathspec``), relative POSIX paths; None
    outside a git work tree."""
    spec = ["--", *pathspec] if pathspec else []
    out = try_git(repo, "ls-files", "--cached", "--others", "--exclude-standard", "-z", *spec, timeout_s=timeout_s)
    return None if out is None else sorted({n for n in out.split("\0") if n})


def repo_state(repo: Path, proofs_dir: Path | None = None) -> RepoState:
    """HEAD and the dirty flag (see the module docstring); ``proofs_dir`` defaults to ``repo/proofs``."""
    commit = try_git(repo, "rev-parse", "HEAD")
    pathspec = ["--", "."]
    bundles = proofs_dir if proofs_dir is not None else repo / PROOFS_DIR
    with contextlib.suppress(ValueError):  # bundles outside the repository: nothing to exclude
        pathspec.append(f":(exclude){bundles.resolve().relative_to(repo.resolve()).as_posix()}")
    status = try_git(repo, "status", "--porcelain", "--untracked-files=no", *pathspec)
    return RepoState(
        commit=commit.strip() if commit else None, dirty=bool(status.strip()) if status is not None else None
    )


def resolve_commit(repo: Path, ref: str) -> str:
    """The commit ``ref`` names; :class:`GitError` when it names none."""
    return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worktrees(repo: Path) -> list[tuple[Path, str]]:
    """(path, lock reason or "") of every linked worktree."""
    out = try_git(repo, "worktree", "list", "--porcelain") or ""
    entries: list[tuple[Path, str]] = []
    path: Path | None = None
    reason = ""
    for line in [*out.splitlines(), ""]:
        if line.startswith("worktree "):
            path, reason = Path(line[len("worktree ") :]), ""
        elif line.startswith("locked"):
            reason = line[len("locked") :].strip()
        elif not line and path is not None:
            entries.append((path, reason))
            path = None
    return entries


def _remove(repo: Path, path: Path) -> None:
    """Remove a worktree however far its creation got; never raises."""
    try_git(repo, "worktree", "remove", "--force", "--force", str(path))  # twice: also when locked
    shutil.rmtree(path, ignore_errors=True)
    try_git(repo, "worktree", "prune")


def remove_leftovers(repo: Path) -> list[Path]:
    """Remove temporary worktrees whose owning process is gone (a crashed earlier run); returns them."""
    try_git(repo, "worktree", "prune")
    removed = []
    for path, reason in _worktrees(repo):
        match = _LOCK_RE.search(reason)
        if match and not _alive(int(match.group(1))):
            _remove(repo, path)
            with contextlib.suppress(OSError):
                path.parent.rmdir()
            removed.append(path)
    return removed


@contextlib.contextmanager
def temporary_worktree(
    repo: Path, ref: str = "HEAD", *, prefix: str = "montage-wt-", name: str = "tree"
) -> Iterator[Worktree]:
    """``ref`` checked out detached in a fresh temporary directory; removed (and pruned) afterwards.

    Cleans up on every exit path, including an exception or interrupt while the worktree was being
    added, and first removes the leftovers of an earlier run that crashed before its cleanup.
    """
    commit = resolve_commit(repo, ref)
    remove_leftovers(repo)
    parent = Path(tempfile.mkdtemp(prefix=prefix))
    path = parent / name
    try:
        git(
            repo, "worktree", "add", "--detach", "--lock", "--reason", f"{_LOCK_PREFIX}{os.getpid()}", str(path), commit
        )
        yield Worktree(path, commit)
    finally:
        _remove(repo, path)
        shutil.rmtree(parent, ignore_errors=True)


def worktree_paths(repo: Path) -> Sequence[Path]:
    """Paths of the linked worktrees git knows about (for tests and diagnostics)."""
    return [p for p, _ in _worktrees(repo)]
