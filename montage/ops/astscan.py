"""One pass over ``git ls-files '*.py'`` serving both AST scans (import hacks and stubs).

Each file is read and parsed once; a single ``ast.walk`` collects what both scans need.  Comment
markers are found with :mod:`tokenize`, but only in files whose text contains a marker word at all,
so strings and code never count and the common case costs one substring search.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER_WORDS = ("TODO", "FIXME")
_MARKER_RX = re.compile(r"\b(" + "|".join(MARKER_WORDS) + r")\b")
_SYS_PATH_MUTATORS = {
    "append", "insert", "extend", "remove", "pop", "clear", "reverse", "sort",
    "__setitem__", "__delitem__", "__iadd__",
}  # fmt: skip
_EXEMPT_DECORATORS = {"overload", "abstractmethod", "abstractproperty", "abstractclassmethod", "abstractstaticmethod"}
SKIP_DIRS = {".git", ".venv", "venv", ".nox", "node_modules", "build", "proofs", "var", "__pycache__"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str  # e.g. "sys.path.append", "stub", a marker word, "syntax-error"
    name: str  # function qualname, or the offending expression
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "kind": self.kind, "name": self.name, "detail": self.detail}

    def render(self) -> str:
        return f"{self.path}:{self.line}: {self.kind} {self.name}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class ScanResult:
    files: list[str]
    source: str  # how the file list was obtained
    hacks: list[Finding] = field(default_factory=list)
    stubs: list[Finding] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)


def list_python_files(repo_root: Path, timeout_s: float = 60.0) -> tuple[list[str], str]:
    """Tracked and untracked-but-not-ignored ``*.py`` files (git), else a directory walk."""
    argv = ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.py"]
    try:
        proc = subprocess.run(argv, cwd=repo_root, capture_output=True, timeout=timeout_s, check=False)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        proc = None
    if proc is not None and proc.returncode == 0:
        names = sorted({n for n in proc.stdout.decode("utf-8", "replace").split("\0") if n})
        return [n for n in names if (repo_root / n).is_file()], "git ls-files"
    found = []
    for path in repo_root.rglob("*.py"):
        rel = path.relative_to(repo_root)
        if not any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            found.append(rel.as_posix())
    return sorted(found), "directory walk (not a git checkout)"


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _is_stub_body(body: list[ast.stmt]) -> str | None:
    stmts = body
    if stmts and isinstance(stmts[0], ast.Expr) and isinstance(stmts[0].value, ast.Constant):
        if isinstance(stmts[0].value.value, str):
            stmts = stmts[1:]
            if not stmts:
                return "docstring only"
    if len(stmts) != 1:
        return None
    stmt = stmts[0]
    if isinstance(stmt, ast.Pass):
        return "pass"
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis:
        return "..."
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        if _dotted(exc).split(".")[-1] == "NotImplementedError":
            return "raise NotImplementedError"
    return None


def _exempt_function(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for deco in fn.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if _dotted(target).split(".")[-1] in _EXEMPT_DECORATORS:
            return True
    return False


def _is_protocol_or_abc(cls: ast.ClassDef) -> bool:
    for base in [*cls.bases, *(k.value for k in cls.keywords if k.arg == "metaclass")]:
        target = base.value if isinstance(base, ast.Subscript) else base
        if _dotted(target).split(".")[-1] in {"Protocol", "ABC", "ABCMeta"}:
            return True
    return False


class _FileScan:
    """Everything collected from one tree in one walk."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sys_names: set[str] = set()
        self.path_names: set[str] = set()
        self.site_names: set[str] = set()
        self.addsitedir_names: set[str] = set()
        self.candidates: list[ast.AST] = []
        self.stubs: list[Finding] = []

    def walk(self, tree: ast.Module) -> None:
        qualnames: dict[int, str] = {}
        exempt: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "sys":
                        self.sys_names.add(alias.asname or "sys")
                    elif alias.name == "site":
                        self.site_names.add(alias.asname or "site")
            elif isinstance(node, ast.ImportFrom):
                if node.module == "sys" and node.level == 0:
                    self.path_names.update(a.asname or a.name for a in node.names if a.name == "path")
                elif node.module == "site" and node.level == 0:
                    self.addsitedir_names.update(a.asname or a.name for a in node.names if a.name == "addsitedir")
            elif isinstance(node, ast.Call | ast.AugAssign | ast.Assign | ast.AnnAssign | ast.Delete):
                self.candidates.append(node)
            elif isinstance(node, ast.ClassDef):
                prefix = qualnames.get(id(node), "")
                protocol = _is_protocol_or_abc(node)
                for child in node.body:
                    if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                        qualnames[id(child)] = f"{prefix}{node.name}.{child.name}"
                        if protocol:
                            exempt.add(id(child))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = qualnames.get(id(node), node.name)
                for child in node.body:
                    if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                        qualnames[id(child)] = f"{name}.<locals>.{child.name}"
                if id(node) in exempt or _exempt_function(node):
                    continue
                why = _is_stub_body(node.body)
                if why is not None:
                    self.stubs.append(Finding(self.path, node.lineno, "stub", name, why))

    def _is_sys_path(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and node.attr == "path":
            return isinstance(node.value, ast.Name) and node.value.id in self.sys_names
        return isinstance(node, ast.Name) and node.id in self.path_names

    def _targets_sys_path(self, target: ast.AST) -> bool:
        if isinstance(target, ast.Subscript):
            return self._is_sys_path(target.value)
        if isinstance(target, ast.Tuple | ast.List):
            return any(self._targets_sys_path(t) for t in target.elts)
        return self._is_sys_path(target)

    def hacks(self) -> list[Finding]:
        out: list[Finding] = []
        for node in self.candidates:
            line = getattr(node, "lineno", 0)
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Attribute):
                    if func.attr in _SYS_PATH_MUTATORS and self._is_sys_path(func.value):
                        out.append(Finding(self.path, line, f"sys.path.{func.attr}", _dotted(func)))
                    elif func.attr == "addsitedir" and isinstance(func.value, ast.Name):
                        if func.value.id in self.site_names:
                            out.append(Finding(self.path, line, "site.addsitedir", _dotted(func)))
                elif isinstance(func, ast.Name) and func.id in self.addsitedir_names:
                    out.append(Finding(self.path, line, "site.addsitedir", func.id))
            elif isinstance(node, ast.AugAssign):
                if self._targets_sys_path(node.target):
                    out.append(Finding(self.path, line, "sys.path augmented assignment", _dotted(node.target)))
            elif isinstance(node, ast.Assign):
                if any(self._targets_sys_path(t) for t in node.targets):
                    out.append(Finding(self.path, line, "sys.path assignment", "sys.path"))
            elif isinstance(node, ast.AnnAssign):
                if self._targets_sys_path(node.target):
                    out.append(Finding(self.path, line, "sys.path assignment", "sys.path"))
            elif isinstance(node, ast.Delete) and any(self._targets_sys_path(t) for t in node.targets):
                out.append(Finding(self.path, line, "sys.path deletion", "sys.path"))
        return sorted(out, key=lambda f: (f.line, f.kind))


def _markers(path: str, text: str) -> list[Finding]:
    out: list[Finding] = []
    try:
        tokens = tokenize.generate_tokens(io.StringIO(text).readline)
        for tok in tokens:
            if tok.type == tokenize.COMMENT:
                for match in _MARKER_RX.finditer(tok.string):
                    out.append(Finding(path, tok.start[0], match.group(1), "comment", tok.string.strip()[:120]))
    except (tokenize.TokenError, SyntaxError):
        pass  # the file already failed ast.parse; that error is reported, not this one
    return out


def scan(repo_root: Path, files: list[str] | None = None) -> ScanResult:
    """Parse every file once and collect import hacks, stubs and comment markers."""
    source = "given"
    if files is None:
        files, source = list_python_files(repo_root)
    result = ScanResult(files=files, source=source)
    for rel in files:
        try:
            raw = (repo_root / rel).read_bytes()
            tree = ast.parse(raw, filename=rel)
        except SyntaxError as exc:
            result.errors.append(Finding(rel, exc.lineno or 0, "syntax-error", "file", str(exc.msg)))
            continue
        except (OSError, ValueError) as exc:
            result.errors.append(Finding(rel, 0, "unreadable", "file", str(exc)))
            continue
        fs = _FileScan(rel)
        fs.walk(tree)
        result.hacks.extend(fs.hacks())
        result.stubs.extend(sorted(fs.stubs, key=lambda f: f.line))
        if b"TODO" in raw or b"FIXME" in raw:
            result.stubs.extend(_markers(rel, raw.decode("utf-8", "replace")))
    return result


def shared_scan(repo_root: Path, shared: dict[str, Any]) -> ScanResult:
    """The scan for this gate run, computed once and shared by both kinds."""
    key = f"astscan:{repo_root.resolve()}"
    cached = shared.get(key)
    if not isinstance(cached, ScanResult):
        cached = scan(repo_root)
        shared[key] = cached
    return cached
