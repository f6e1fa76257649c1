from __future__ import annotations

import textwrap

import pytest

from montage.ops.astscan import list_python_files, scan
from montage.ops.checks.base import Verdict

from .conftest import Repo
from .test_checks import measure

HACKS = """
import sys
import sys as system
import site
from sys import path
from sys import path as p2
from site import addsitedir
import os

sys.path.append("a")                      # line 10
sys.path.insert(0, "b")                   # line 11
sys.path.extend(["c"])                    # line 12
sys.path += ["d"]                         # line 13
sys.path = ["e"] + sys.path               # line 14
sys.path[0:0] = ["f"]                     # line 15
system.path.append("g")                   # line 16
path.append("h")                          # line 17
p2.insert(0, "i")                         # line 18
site.addsitedir("j")                      # line 19
addsitedir("k")                           # line 20
del sys.path[0]                           # line 21
sys.path[:]: list = []                    # line 22
"""

CLEAN = '''
import os
import sys
# sys.path.append("commented out")
text = "sys.path.append('in a string')"
doc = """site.addsitedir('in a docstring')"""
print(sys.path[0], os.path.join("a", "b"))
paths = []
paths.append("not sys.path")
class Thing:
    path = []
    def add(self):
        self.path.append("not sys")
'''


def test_import_hacks_finds_every_form_with_lines(repo: Repo) -> None:
    repo.write("hacky.py", HACKS)
    repo.write("clean.py", CLEAN)
    result = scan(repo.root)
    assert result.source == "git ls-files"
    lines = sorted(f.line for f in result.hacks)
    assert lines == list(range(10, 23)), [f.render() for f in result.hacks]
    assert all(f.path == "hacky.py" for f in result.hacks)
    j, ev = measure(repo, "import_hacks", {})
    assert j.verdict is Verdict.FAIL and j.value["count"] == 13 and "hacky.py:10" in j.reason
    assert (ev / "import_hacks.out").read_text().startswith("count: 13\n")
    clean, _ = measure(repo, "import_hacks", {"exclude": ["hacky.py"]}, check_id="clean")
    assert clean.verdict is Verdict.PASS and clean.value["count"] == 0


STUBS = '''
import abc
from typing import Protocol, overload

def stub_pass():
    pass

def stub_ellipsis():
    ...

def stub_raise():
    raise NotImplementedError

def stub_raise_call(x):
    """Docstring."""
    raise NotImplementedError("later")

def stub_doc_only():
    """Only a docstring."""

async def stub_async():
    pass

class Impl:
    def method(self):
        pass

class Port(Protocol):
    def read(self) -> bytes: ...

class Base(abc.ABC):
    @abc.abstractmethod
    def run(self): ...

class Other:
    @abc.abstractmethod
    def also_abstract(self): ...

@overload
def f(x: int) -> int: ...
@overload
def f(x: str) -> str: ...
def f(x):
    return x

def real():
    """Does something."""
    return 1

def outer():
    def inner():
        pass
    return inner

marker = "TODO in a string does not count"
# TODO: a real marker
x = 1  # FIXME trailing marker
'''


def test_stub_scan_finds_stubs_and_comment_markers(repo: Repo) -> None:
    repo.write("mod.py", STUBS)
    result = scan(repo.root)
    names = sorted((f.kind, f.name) for f in result.stubs)
    assert names == sorted(
        [
            ("stub", "stub_pass"),
            ("stub", "stub_ellipsis"),
            ("stub", "stub_raise"),
            ("stub", "stub_raise_call"),
            ("stub", "stub_doc_only"),
            ("stub", "stub_async"),
            ("stub", "Impl.method"),
            ("stub", "outer.<locals>.inner"),
            ("TODO", "comment"),
            ("FIXME", "comment"),
        ]
    ), names
    j, ev = measure(repo, "stub_scan", {})
    assert j.verdict is Verdict.FAIL and j.value["count"] == 10
    assert (ev / "stub_scan.out").read_text().startswith("count: 10\n")


def test_stub_scan_allowlist_needs_reasons(repo: Repo) -> None:
    repo.write("mod.py", "def hook():\n    pass\n# TODO later\n")
    repo.write("allow.txt", "# comment\n\nmod.py::hook  # default hook, subclasses override\nmod.py::TODO  # issue 7\n")
    j, _ = measure(repo, "stub_scan", {"allowlist": "allow.txt"})
    assert j.verdict is Verdict.PASS and j.value == {"count": 0, "allowed": 2, "files_scanned": 2, "parse_errors": 0}
    repo.write("allow.txt", "mod.py::hook\nmod.py::TODO # ok\n")
    j, _ = measure(repo, "stub_scan", {"allowlist": "allow.txt"}, check_id="noreason")
    assert j.verdict is Verdict.ERROR and "has no reason" in j.reason
    repo.write("allow.txt", "just-a-path  # reason\n")
    j, _ = measure(repo, "stub_scan", {"allowlist": "allow.txt"}, check_id="badform")
    assert j.verdict is Verdict.ERROR and "is not path::name" in j.reason
    j, _ = measure(repo, "stub_scan", {"allowlist": "missing.txt"}, check_id="missing")
    assert j.verdict is Verdict.ERROR and "does not exist" in j.reason


def test_parse_errors_make_scans_inconclusive(repo: Repo) -> None:
    repo.write("ok.py", "x = 1\n")
    repo.write("broken.py", "def (:\n")
    result = scan(repo.root)
    assert [f.path for f in result.errors] == ["broken.py"]
    hacks, _ = measure(repo, "import_hacks", {})
    assert hacks.verdict is Verdict.INCONCLUSIVE and "broken.py:1" in hacks.reason
    stubs, _ = measure(repo, "stub_scan", {}, check_id="s")
    assert stubs.verdict is Verdict.INCONCLUSIVE
    none, _ = measure(repo, "import_hacks", {"include": ["nothing/*"]}, check_id="n")
    assert none.verdict is Verdict.INCONCLUSIVE and "no Python files" in none.reason


def test_both_scans_share_one_parse(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    import ast

    from montage.ops import astscan
    from montage.ops.checks import load_kind
    from montage.ops.checks.base import CheckContext

    repo.write("a.py", "import sys\nsys.path.append('x')\ndef s():\n    pass\n")
    repo.write("b.py", "y = 2\n")
    calls: list[str] = []
    real_parse = ast.parse

    def counting_parse(source: bytes, filename: str = "<unknown>", *a: object, **k: object) -> ast.Module:
        calls.append(filename)
        return real_parse(source, filename)

    monkeypatch.setattr(astscan.ast, "parse", counting_parse)
    shared: dict[str, object] = {}
    for kind in ("import_hacks", "stub_scan"):
        module = load_kind(kind)
        ev = repo.root / "bundle" / kind
        ev.mkdir(parents=True)
        ctx = CheckContext(repo.root, repo.root / "bundle", ev, 0, kind, shared=shared)
        module.run(module.Params(), ctx)
    assert sorted(calls) == ["a.py", "b.py", "src/app.py"]  # each file once, for both kinds


def test_file_list_without_git_walks_the_tree(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path)) / "plain"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "m.py").write_text(textwrap.dedent("x = 1\n"))
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "skip.py").write_text("y = 1\n")
    files, source = list_python_files(root)
    assert files == ["pkg/m.py"] and "walk" in source


NESTED = '''
import os
import sys


def deco(x):
    return lambda f: f


@deco(sys.path.append("in a decorator"))
def f():
    if os.name:
        with open(__file__):
            for _ in range(1):
                try:
                    sys.path.insert(0, "deep")
                except OSError:
                    [sys.path.extend([p]) for p in ("comprehension",)]
    return sys.path[0]


class K:
    # FIXME: a comment inside a class body
    text = """
    # TODO inside a string: not a comment
    """

    def m(self):
        return "# TODO also a string"  # TODO but this one is a comment
'''


def test_nested_statements_and_markers_in_statements(repo: Repo) -> None:
    repo.write("nested.py", NESTED)
    result = scan(repo.root, ["nested.py"])
    assert sorted((f.line, f.kind) for f in result.hacks) == [
        (10, "sys.path.append"),
        (16, "sys.path.insert"),
        (18, "sys.path.extend"),
    ]
    assert sorted((f.line, f.kind) for f in result.stubs) == [(23, "FIXME"), (29, "TODO")]


@pytest.mark.parametrize(
    "source",
    [
        "from sys import (\n    argv,\n    path as p,\n)\n\n\ndef f():\n    p.append('x')\n",
        "from sys import (path as p)\np.insert(0, 'x')\n",
        "import os, sys as s\ns.path.extend(['x'])\n",
        "from site import addsitedir as add\nadd('x')\n",
    ],
)
def test_aliases_found_wherever_they_are_used(repo: Repo, source: str) -> None:
    repo.write("alias.py", source)
    assert len(scan(repo.root, ["alias.py"]).hacks) == 1
