"""The default negative controls of the check kinds (each kind declares its own in ``CONTROLS``).

Every control is a minimal real change to the product in a throwaway tree: a failing test, an
untested module, a ``sys.path`` edit, a stub, a missing output, a downgrade that leaves a table, a
perf regression. None changes the check's own parameters: a control that only works by loosening
the check would prove nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from montage.ops.checks._scanfilter import ScanScope
from montage.ops.checks.base import ControlNotApplicable, control_file

NAME = "_negative_control"
FAILING_TEST = f'''"""Negative control (phase.selftest): a test that fails."""


def test{NAME}_fails() -> None:
    assert 1 + 1 == 3, "the negative control's failing test"
'''
UNCOVERED_LINES = 400


def _scan_target(tree: Path, scope: ScanScope) -> str:
    """A new file path the scan's include / exclude globs select."""
    guesses = [g.replace("**/", "").replace("*", NAME) for g in scope.include]
    guesses += [f"montage/{NAME}.py", f"{NAME}.py"]
    for rel in guesses:
        if rel.endswith(".py") and scope.selects(rel) and not any(c in rel for c in "?[]"):
            return rel
    raise ControlNotApplicable(f"no new file path is selected by include {scope.include} / exclude {scope.exclude}")


def import_hack(tree: Path, params: Any) -> str:
    rel = _scan_target(tree, params)
    control_file(tree, rel, '"""Negative control."""\n\nimport sys\n\nsys.path.insert(0, "vendor")\n')
    return f"{rel}: a module that does sys.path.insert(0, 'vendor')"


def stub(tree: Path, params: Any) -> str:
    rel = _scan_target(tree, params)
    control_file(
        tree, rel, f'"""Negative control."""\n\n\ndef {NAME}_stub(value: int) -> int:\n    raise NotImplementedError\n'
    )
    return f"{rel}: a function whose body is raise NotImplementedError"


def _path_args(tree: Path, args: list[str]) -> list[str]:
    return [a for a in args if not a.startswith("-") and (tree / a.split("::")[0]).exists()]


def failing_test(tree: Path, params: Any) -> str:
    targets = _path_args(tree, list(params.args))
    if targets:
        first = targets[0].split("::")[0]
        if (tree / first).is_dir():
            # in a directory of its own whose name sorts first, so a run that stops at its first
            # failure (CheckContext.fail_fast) stops here instead of after the whole suite
            rel = f"{first.rstrip('/')}/{NAME}/test{NAME}.py"
            control_file(tree, rel, FAILING_TEST)
            return f"{rel}: a failing test"
        path = tree / first
        path.write_text(path.read_text(encoding="utf-8") + "\n\n" + FAILING_TEST.split('"""\n', 2)[-1], "utf-8")
        return f"{first}: a failing test appended"
    rel = f"tests/test{NAME}.py" if (tree / "tests").is_dir() else f"test{NAME}.py"
    control_file(tree, rel, FAILING_TEST)
    return f"{rel}: a failing test"


def untested_code(tree: Path, params: Any) -> str:
    modules = [m for m, _ in sorted(params.modules.items(), key=lambda kv: -kv[1])] or ["montage"]
    base = tree.joinpath(*modules[0].split("."))
    target = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    if not target.is_file():
        raise ControlNotApplicable(f"module {modules[0]} has no file in the tree to add untested code to")
    body = "".join(f"    value = value * 3 + {i}\n" for i in range(UNCOVERED_LINES))
    text = target.read_text(encoding="utf-8")
    target.write_text(text + f"\n\ndef {NAME}(value: int) -> int:  # never called\n{body}    return value\n", "utf-8")
    return f"{target.relative_to(tree)}: {UNCOVERED_LINES} lines of code that no test runs (module {modules[0]})"


def _entry_point(tree: Path, argv: list[str]) -> Path | None:
    for i, arg in enumerate(argv):
        if arg == "-c":  # inline code: nothing in the tree to change (the phase file can add a control)
            return None
        if arg == "-m" and i + 1 < len(argv):
            module = tree.joinpath(*argv[i + 1].split("."))
            for candidate in (module / "__main__.py", module.with_suffix(".py")):
                if candidate.is_file():
                    return candidate
        elif not arg.startswith("-") and "{" not in arg and (tree / arg).is_file():
            return tree / arg
    return None


def silent_command(tree: Path, params: Any) -> str:
    entry = _entry_point(tree, list(params.argv))
    if entry is None:
        raise ControlNotApplicable(f"{params.argv} runs nothing inside the repository to change")
    code = params.expect_exit + 1
    text = f"import sys\n\nsys.exit({code})\n" if entry.suffix == ".py" else f"#!/bin/sh\nexit {code}\n"
    entry.write_text(text, encoding="utf-8")
    return f"{entry.relative_to(tree)}: prints nothing and exits {code}"


def missing_file(tree: Path, params: Any) -> str:
    path = tree / params.path
    existed = path.is_file()
    path.unlink(missing_ok=True)
    return f"{params.path}: removed" + ("" if existed else " (it was not in the tree)")


def empty_log(tree: Path, params: Any) -> str:
    if params.min_count < 1:
        raise ControlNotApplicable("the check wants at most max_count lines, so an empty log passes it")
    path = tree / params.path
    control_file(tree, params.path, "")
    return f"{path.relative_to(tree)}: emptied (the expected lines absent)"


def leaky_downgrade(tree: Path, params: Any) -> str:
    versions = tree / "migrations" / "versions"
    revisions: dict[str, str | None] = {}
    for path in sorted(versions.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        rev = re.search(r'^revision[^=]*=\s*"([^"]+)"', text, re.MULTILINE)
        down = re.search(r'^down_revision[^=]*=\s*"([^"]+)"', text, re.MULTILINE)
        if rev:
            revisions[rev.group(1)] = down.group(1) if down else None
    heads = sorted(set(revisions) - {d for d in revisions.values() if d})
    if len(heads) != 1:
        raise ControlNotApplicable(f"{versions}: expected one Alembic head, found {heads}")
    rel = f"migrations/versions/9999{NAME}.py"
    table = NAME.strip("_")
    text = (
        '"""Negative control: a downgrade that leaves its table."""\n\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f'revision = "9999"\ndown_revision = "{heads[0]}"\nbranch_labels = None\ndepends_on = None\n\n\n'
        "def upgrade() -> None:\n"
        f'    op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))\n\n\n'
        "def downgrade() -> None:\n    pass  # leaves the table behind\n"
    )
    control_file(tree, rel, text)
    return f"{rel}: a revision after {heads[0]} whose downgrade leaves its table"


def perf(name: str) -> Any:
    def apply(tree: Path, params: Any) -> str:
        from montage.ops.perf import controls

        return controls.apply(tree, name)

    return apply


def missing_baseline(tree: Path, params: Any) -> str:
    (tree / params.path).unlink(missing_ok=True)
    return f"{params.path}: removed"
