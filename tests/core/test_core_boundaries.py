"""Outside montage/core nobody runs git, manages worktrees, finds ffmpeg, reads cgroup files or works
out the flags file path: each of those has one owner in montage/core (issue 8).  The AST is walked,
so a docstring or a comment that mentions a path is not a finding, a call is."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "montage"
CORE = PACKAGE / "core"
RUNNERS = {"run", "Popen", "call", "check_call", "check_output", "create_subprocess_exec", "spawn", "run_logged"}
CGROUP_MARKERS = ("/sys/fs/cgroup", "/proc/self/cgroup", "/proc/self/mountinfo", "memory.max", "memory.current",
                  "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat", "cpu.max")  # fmt: skip
FLAGS_ENV = "MONTAGE_OPS__FLAGS_FILE"


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _strings(node: ast.AST) -> Iterator[str]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings (module, class, function)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def violations(source: str, filename: str) -> list[str]:
    """What in ``source`` belongs in montage/core, as ``file:line: what`` strings."""
    tree = ast.parse(source, filename)
    docs = _docstrings(tree)
    found: list[str] = []

    def add(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            literal_argv = [a for a in node.args if isinstance(a, (ast.List, ast.Tuple)) and a.elts]
            for argv in literal_argv:
                head = argv.elts[0]
                if name in RUNNERS and isinstance(head, ast.Constant) and head.value == "git":
                    add(node, "runs git itself (use montage.core.git)")
            if name in RUNNERS and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "git":
                add(node, "runs git itself (use montage.core.git)")
            if any(isinstance(a, ast.Constant) and a.value == "worktree" for a in node.args) or any(
                isinstance(e, ast.Constant) and e.value == "worktree" for argv in literal_argv for e in argv.elts
            ):
                add(node, "runs `git worktree` (use montage.core.git.temporary_worktree)")
            if name == "which" and any(("ffmpeg" in s or "ffprobe" in s) for a in node.args for s in _strings(a)):
                add(node, "looks for ffmpeg/ffprobe itself (use montage.core.ffmpeg.locate)")
            if name in {"get", "getenv", "pop"} and any(
                isinstance(a, ast.Constant) and a.value == FLAGS_ENV for a in node.args
            ):
                add(node, f"reads {FLAGS_ENV} itself (use montage.core.flags.flags_path)")
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if isinstance(node.slice, ast.Constant) and node.slice.value == FLAGS_ENV:
                add(node, f"reads {FLAGS_ENV} itself (use montage.core.flags.flags_path)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if node.value == "var/flags.json":
                add(node, "spells the default flags file path (use montage.core.flags)")
            if any(marker in node.value for marker in CGROUP_MARKERS):
                add(node, f"reads cgroup files ({node.value!r}; use montage.core.cgroup)")
    return found


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if CORE not in p.parents)


def test_nothing_outside_core_does_what_core_owns() -> None:
    found = [v for path in _package_files() for v in violations(path.read_text(encoding="utf-8"), str(path))]
    assert found == []


PLANTED = '''
"""A docstring may mention /sys/fs/cgroup/memory.max and var/flags.json."""
import os, shutil, subprocess

def bad(repo):
    subprocess.run(["git", "status"], cwd=repo)
    subprocess.Popen(("git", "worktree", "add", "x"))
    git(repo, "worktree", "prune")
    shutil.which("ffprobe")
    shutil.which(name or "ffmpeg")
    open("/sys/fs/cgroup/" + rel + "/memory.max").read()
    os.environ.get("MONTAGE_OPS__FLAGS_FILE", "var/flags.json")
    os.environ["MONTAGE_OPS__FLAGS_FILE"]
    env = {"MONTAGE_OPS__FLAGS_FILE": "/tmp/x/flags.json"}  # a child's own file: allowed
    run_logged(["git", "revert", "HEAD"], log, repo, 60)
'''


def test_the_scan_finds_planted_violations(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(PLANTED, encoding="utf-8")
    found = violations(planted.read_text(encoding="utf-8"), planted.name)
    lines = sorted({int(v.split(":")[1]) for v in found})
    assert lines == [6, 7, 8, 9, 10, 11, 12, 13, 15], found
    assert sum("runs git itself" in v for v in found) == 3
    assert sum("git worktree" in v for v in found) == 2
    assert sum("ffmpeg/ffprobe" in v for v in found) == 2
    assert sum(f"reads {FLAGS_ENV}" in v for v in found) == 2
    assert any("spells the default flags file" in v for v in found)
    assert any("reads cgroup files" in v for v in found)


@pytest.mark.parametrize("module", ["files", "proc", "git", "flags", "envfile", "cgroup", "ffmpeg", "loopback"])
def test_core_modules_import_light(module: str) -> None:
    """Importing montage.core.* pulls in no pydantic, SQLAlchemy, FastAPI or the media stack."""
    import subprocess
    import sys

    code = (
        f"import sys, montage.core.{module}; "
        "heavy = [m for m in ('pydantic', 'sqlalchemy', 'fastapi', 'jinja2', 'httpx', 'yaml', 'psutil', "
        "'imageio_ffmpeg', 'montage.media', 'montage.db', 'montage.settings') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
