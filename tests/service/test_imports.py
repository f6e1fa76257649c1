"""The start-up import probe: every lazily imported module is listed, and a broken one is counted."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from montage.service import imports

ROOT = Path(__file__).resolve().parents[2]


def _lazy_imports() -> dict[str, str]:
    """Third-party and montage modules imported inside a function anywhere in montage/ (not ops)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "montage").rglob("*.py")):
        if "ops" in path.relative_to(ROOT / "montage").parts:
            continue  # the toolkit, not the service, its workers or the render path
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                names = []
                if isinstance(inner, ast.Import):
                    names = [a.name for a in inner.names]
                elif isinstance(inner, ast.ImportFrom) and inner.module and inner.level == 0:
                    names = [inner.module]
                for name in names:
                    if name.split(".")[0] not in sys.stdlib_module_names:
                        found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def test_every_lazy_import_is_probed() -> None:
    probed = set(imports.LAZY_MODULES) | set(imports.OPTIONAL_MODULES)
    # the service's own layers: loaded by `montage serve` before it answers (a failure there stops it)
    loaded_by_serve = ("montage.core", "montage.commands", "montage.service", "montage.db", "montage.errors",
                       "montage.settings")  # fmt: skip
    missing = {
        name: where
        for name, where in _lazy_imports().items()
        if name not in probed and name != "montage" and not name.startswith(loaded_by_serve)
    }
    assert not missing, f"lazily imported but not probed at start-up (add to LAZY_MODULES): {missing}"


def test_probe_counts_a_shadowed_broken_module(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "av.py").write_text("raise ImportError('broken av build')\n", encoding="utf-8")
    code = (
        "from montage.service import imports\n"
        "failed = imports.probe()\n"
        "print(sorted(failed)); print(imports.import_error_counts())\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{shadow}{os.pathsep}{ROOT}"}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    failed, counts = done.stdout.splitlines()
    assert failed == "['av']", done.stdout + done.stderr
    assert counts == "{'av': 1}"
    clean = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert clean.stdout.splitlines() == ["[]", "{}"], clean.stdout + clean.stderr


def test_import_error_in_the_cause_chain_is_counted_where_handled() -> None:
    before = imports.import_error_counts().get("gone_module", 0)
    try:
        try:
            raise ModuleNotFoundError("No module named 'gone_module'", name="gone_module")
        except ImportError as exc:
            raise RuntimeError("render step failed") from exc
    except RuntimeError as outer:
        imports.count_if_import_error(outer)
    imports.count_if_import_error(ValueError("not an import"))
    assert imports.import_error_counts()["gone_module"] == before + 1


def test_failed_jobs_import_errors_are_classified_by_module() -> None:
    tail = "renderer exited 1: Traceback (most recent call last):\nModuleNotFoundError: No module named 'av'"
    assert imports.import_error_in(tail) == "av"
    assert imports.import_error_in("ImportError: cannot import name 'x' from 'opentimelineio' (y)") == "opentimelineio"
    assert imports.import_error_in("renderer exited 1:\nImportError: a broken PyAV build") == "unknown"
    assert imports.import_error_in("renderer exited 1: ffmpeg failed") is None
    assert imports.failed_job_imports([tail, None, "timed out after 5 s", tail]) == {"av": 2}
