"""One pass over ``git ls-files '*.py'`` serving both AST scans (import hacks and stubs).

Each file is read and parsed once; one walk over its statements collects what both scans need.
Expressions are walked only in statements whose text mentions sys.path / addsitedir (or an alias
of them), and comment markers are confirmed with :mod:`tokenize` only for the top-level statements
that hold a ``#`` before a marker word, so strings and code never count and the common case costs a
few substring searches on top of ``ast.parse``.
"""

from __future__ import annotations

import ast
import bisect
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from montage.core import git as core_git

MARKER_WORDS = ("TODO", "FIXME")
_MARKER_RX = re.compile(r"\b(" + "|".join(MARKER_WORDS) + r")\b")
_SYS_PATH_MUTATORS = {
    "append", "insert", "extend", "remove", "pop", "clear", "reverse", "sort",
    "__setitem__", "__delitem__", "__iadd__",
}  # fmt: skip
_EXEMPT_DECORATORS = {"overload", "abstractmethod", "abstractproperty", "abstractclassmethod", "abstractstaticmethod"}
SKIP_DIRS = {".git", ".venv", "venv", ".nox", "node_modules", "build", "proofs", "var", "__pycache__"}
# Every sys.path / site edit the AST scan recognises has one of these on its lines ...
_LINE_HINT = re.compile(rb"\bsys\s*\.\s*path\b|addsitedir")
# Aliases (`import sys as s`, `from sys import path as p`, `from site import addsitedir`) add the
# lines that mention the alias; an import list we cannot read from the text means "every line".
_ALIAS_DEFS = re.compile(rb"\b(?:sys|site)\s+as\s+(\w+)|\bfrom\s+(?:sys|site)\s+import\s+([^\n;#]+)")
_BODY_FIELDS = {"body", "orelse", "finalbody", "handlers", "cases"}
_COMPOUND: frozenset[type] = frozenset({
    ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For, ast.AsyncFor, ast.While,
    ast.With, ast.AsyncWith, ast.Try, ast.TryStar, ast.Match,
})  # fmt: skip


class _Hint:
    """Which lines of a file could hold a sys.path edit (from a cheap text search)."""

    def __init__(self, raw: bytes) -> None:
        self.everywhere = False
        self.lines: list[int] = []
        if b"path" not in raw and b"addsitedir" not in raw:
            return  # every recognised edit spells one of these (sys.path, from sys import path, addsitedir)
        patterns = [_LINE_HINT]
        for match in _ALIAS_DEFS.finditer(raw):
            if match.group(1):
                patterns.append(re.compile(rb"\b" + re.escape(match.group(1)) + rb"\s*\."))
                continue
            names = match.group(2).strip()
            if names.startswith(b"(") and b")" not in names:
                self.everywhere = True  # a multi-line import list: do not guess, examine everything
                return
            for item in names.strip(b"()").split(b","):
                parts = item.split()
                if parts and parts[0] in (b"path", b"addsitedir"):
                    patterns.append(re.compile(rb"\b" + re.escape(parts[-1]) + rb"\b"))
        hits = sorted({m.start() for rx in patterns for m in rx.finditer(raw)})
        line, pos = 1, 0
        for offset in hits:
            line += raw.count(b"\n", pos, offset)
            pos = offset
            if not self.lines or self.lines[-1] != line:
                self.lines.append(line)

    def touches(self, node: ast.stmt) -> bool:
        if self.everywhere:
            return True
        if not self.lines:
            return False
        decorators = getattr(node, "decorator_list", None) or []
        first = min([node.lineno, *(d.lineno for d in decorators)])
        i = bisect.bisect_left(self.lines, first)
        return i < len(self.lines) and self.lines[i] <= (node.end_lineno or node.lineno)


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
    listed = core_git.repo_files(repo_root, "*.py", timeout_s=timeout_s)
    if listed is not None:
        return [n for n in listed if (repo_root / n).is_file()], "git ls-files"
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

    def note_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sys":
                    self.sys_names.add(alias.asname or "sys")
                elif alias.name == "site":
                    self.site_names.add(alias.asname or "site")
        elif node.module == "sys" and node.level == 0:
            self.path_names.update(a.asname or a.name for a in node.names if a.name == "path")
        elif node.module == "site" and node.level == 0:
            self.addsitedir_names.update(a.asname or a.name for a in node.names if a.name == "addsitedir")

    def collect(self, node: ast.AST) -> None:
        """Every call or assignment under ``node`` that could edit sys.path."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call | ast.AugAssign | ast.Assign | ast.AnnAssign | ast.Delete):
                self.candidates.append(sub)

    def walk(self, body: list[ast.stmt], hint: _Hint, prefix: str = "", exempt: bool = False) -> None:
        """One pass over the statements: stubs, imports, and (only where the text hints at it) sys.path edits.

        Only statements are visited (functions cannot hide in expressions); expressions are walked
        just for statements whose lines mention sys.path / addsitedir, or everywhere when the file
        aliases them (``from sys import path``, ``import sys as s``).
        """
        look = hint.everywhere or bool(hint.lines)
        for node in body:
            kind = type(node)  # exact types: cheaper than isinstance chains on this hot path
            if kind is ast.Import or kind is ast.ImportFrom:
                self.note_import(node)  # type: ignore[arg-type]
            compound = kind in _COMPOUND
            if look and hint.touches(node):
                if compound:
                    for name, value in ast.iter_fields(node):
                        if name not in _BODY_FIELDS:
                            for item in value if isinstance(value, list) else [value]:
                                if isinstance(item, ast.AST):
                                    self.collect(item)
                else:
                    self.collect(node)
            if not compound:
                continue
            if kind is ast.FunctionDef or kind is ast.AsyncFunctionDef:
                fn: ast.FunctionDef = node  # type: ignore[assignment]
                name = prefix + fn.name
                if not exempt and not _exempt_function(fn):
                    why = _is_stub_body(fn.body)
                    if why is not None:
                        self.stubs.append(Finding(self.path, fn.lineno, "stub", name, why))
                self.walk(fn.body, hint, f"{name}.<locals>.")
            elif kind is ast.ClassDef:
                cls: ast.ClassDef = node  # type: ignore[assignment]
                self.walk(cls.body, hint, f"{prefix}{cls.name}.", _is_protocol_or_abc(cls))
            else:
                for field_name in ("body", "orelse", "finalbody"):
                    inner = getattr(node, field_name, None)
                    if inner:
                        self.walk(inner, hint, prefix, exempt)
                for part in [*getattr(node, "handlers", ()), *getattr(node, "cases", ())]:
                    self.walk(part.body, hint, prefix, exempt)

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


def _markers(path: str, raw: bytes, tree: ast.Module) -> list[Finding]:
    """TODO/FIXME in comments only.  Tokenizes just the top-level statements that need it."""
    lines = raw.decode("utf-8", "replace").splitlines(keepends=True)
    spans = []
    for node in tree.body:
        decorators = getattr(node, "decorator_list", None) or []
        spans.append((min([node.lineno, *(d.lineno for d in decorators)]), node.end_lineno or node.lineno))
    starts = [a for a, _ in spans]
    out: list[Finding] = []
    tokenized: dict[int, set[int]] = {}
    for lineno, line in enumerate(lines, 1):
        for match in _MARKER_RX.finditer(line):
            hash_at = line.find("#")
            if hash_at < 0 or hash_at > match.start():
                continue  # no '#' before the word on this line: it is code or a string, not a comment
            i = bisect.bisect_right(starts, lineno) - 1
            if i >= 0 and spans[i][0] <= lineno <= spans[i][1]:
                if i not in tokenized:
                    tokenized[i] = _comment_lines(lines[spans[i][0] - 1 : spans[i][1]], spans[i][0])
                if lineno not in tokenized[i]:
                    continue
            # outside every statement, a line holding '#' is a comment line
            comment = line[hash_at:].strip()
            out.append(Finding(path, lineno, match.group(1), "comment", comment[:120]))
            break
    return out


def _comment_lines(segment: list[str], first_line: int) -> set[int]:
    """Line numbers (file-based) of comments holding a marker inside one top-level statement."""
    found: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO("".join(segment)).readline):
            if tok.type == tokenize.COMMENT and _MARKER_RX.search(tok.string):
                found.add(tok.start[0] + first_line - 1)
    except (tokenize.TokenError, SyntaxError):
        pass  # the statement parsed as part of its file, so this cannot happen in practice
    return found


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
        fs.walk(tree.body, _Hint(raw))
        result.hacks.extend(fs.hacks())
        result.stubs.extend(sorted(fs.stubs, key=lambda f: f.line))
        if b"TODO" in raw or b"FIXME" in raw:
            result.stubs.extend(_markers(rel, raw, tree))
    return result


def shared_scan(repo_root: Path, shared: dict[str, Any]) -> ScanResult:
    """The scan for this gate run, computed once and shared by both kinds."""
    key = f"astscan:{repo_root.resolve()}"
    cached = shared.get(key)
    if not isinstance(cached, ScanResult):
        cached = scan(repo_root)
        shared[key] = cached
    return cached
