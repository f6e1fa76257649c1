"""montage.core.git on a real repository in tmp_path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from montage.core import git
from montage.errors import ExitCode


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{name}_NAME", "t")
        monkeypatch.setenv(f"{name}_EMAIL", "t@example.com")
    git.git(root, "init", "-q", "-b", "main")
    (root / "a.txt").write_text("one\n")
    (root / "proofs").mkdir()
    (root / "proofs" / "bundle.json").write_text("{}\n")
    git.git(root, "add", ".")
    git.git(root, "commit", "-q", "-m", "first")
    return root


def test_errors_name_the_command_and_git_message(repo: Path) -> None:
    with pytest.raises(git.GitError, match="rev-parse --verify --quiet nope") as info:
        git.resolve_commit(repo, "nope")
    assert info.value.exit_code == ExitCode.USAGE
    assert git.try_git(repo, "rev-parse", "nope") is None


def test_one_definition_of_dirty(repo: Path) -> None:
    head = git.git(repo, "rev-parse", "HEAD")
    assert git.repo_state(repo) == git.RepoState(head, False)
    (repo / "untracked.txt").write_text("new\n")  # untracked files do not count
    assert git.repo_state(repo).dirty is False
    (repo / "proofs" / "bundle.json").write_text('{"replaced": true}\n')  # nor do bundles being replaced
    assert git.repo_state(repo).dirty is False
    (repo / "a.txt").write_text("two\n")  # a tracked file does
    assert git.repo_state(repo).dirty is True
    assert git.repo_state(repo.parent) == git.RepoState(None, None)  # not a work tree
    assert git.repo_files(repo) == ["a.txt", "proofs/bundle.json", "untracked.txt"]


def test_temporary_worktree_is_removed_on_error(repo: Path) -> None:
    with pytest.raises(RuntimeError), git.temporary_worktree(repo, "HEAD") as wt:
        assert (wt.path / "a.txt").read_text() == "one\n" and wt.commit == git.git(repo, "rev-parse", "HEAD")
        (wt.path / "scratch").write_text("x")
        raise RuntimeError("boom")
    assert not wt.path.exists() and not wt.path.parent.exists()
    assert git.worktree_paths(repo) == [repo]


def test_leftover_of_a_crashed_run_is_removed(repo: Path, tmp_path: Path) -> None:
    """A process that dies inside temporary_worktree (SIGKILL: no finally) leaves one; the next run removes it."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from montage.core import git\n"
        f"with git.temporary_worktree(Path({str(repo)!r})) as wt:\n"
        "    print(wt.path, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -9, done.stderr
    leftover = Path(done.stdout.strip())
    assert leftover.is_dir() and leftover in git.worktree_paths(repo)
    with git.temporary_worktree(repo) as wt:
        assert leftover not in git.worktree_paths(repo) and not leftover.exists()
        assert wt.path in git.worktree_paths(repo)
    assert git.worktree_paths(repo) == [repo]


def test_a_live_runs_worktree_is_left_alone(repo: Path) -> None:
    with git.temporary_worktree(repo) as outer:
        assert git.remove_leftovers(repo) == []  # owned by this (live) process
        with git.temporary_worktree(repo, "HEAD", name="inner") as inner:
            assert {outer.path, inner.path} <= set(git.worktree_paths(repo))
        assert outer.path.is_dir()
