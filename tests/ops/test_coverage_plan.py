"""``coverage-plan``: the roadmap's weeks judged on branch coverage measured by real coverage runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.conftest import Repo

ROVER = """\
def pick(a, b, c):
    out = []
    if a:
        out.append("a")
    if b:
        out.append("b")
    if c:
        out.append("c")
    return out
"""


def _coverage(repo: Repo, name: str, calls: str) -> Path:
    """A real coverage run (branch mode) of a script calling the fixture's rover.pick."""
    script = repo.write(f"var/{name}.py", f"import sys\nsys.path.insert(0, {str(repo.root)!r})\n"
                        f"from montage.media.rover import pick\n{calls}\n")  # fmt: skip
    data = repo.root / "var" / f"{name}.coverage"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE_", "COVERAGE_"))}
    argv = [sys.executable, "-m", "coverage", "run", "--branch", f"--data-file={data}"]
    argv += [f"--source={repo.root / 'montage'}", str(script)]
    subprocess.run(argv, cwd=repo.root, env=env, check=True, timeout=120)
    return data


def test_plan_reads_real_coverage_against_baseline_targets(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.write("montage/__init__.py", "")
    repo.write("montage/media/__init__.py", "")
    repo.write("montage/media/rover.py", ROVER)
    repo.commit_all()
    assert repo.ops("coverage-plan", "--data", str(repo.root / "missing.coverage")) == 2
    assert "no such coverage data file" in capsys.readouterr().err
    low = _coverage(repo, "low", "pick(1, 0, 0)")  # 3 of 6 branches
    assert repo.ops("coverage-plan", "--data", str(low)) == 2  # no baseline yet
    assert "coverage_base.json does not exist" in capsys.readouterr().err

    assert repo.ops("coverage-plan", "--data", str(low), "--write-base") == 0
    base = json.loads((repo.root / "coverage_base.json").read_text())
    assert base["modules"]["montage/media/rover.py"]["branch"] == 50.0
    assert base["git"]["commit"] == repo.git("rev-parse", "HEAD").strip() and base["command"] and base["date"]
    assert isinstance(base["global"], float)  # what the coverage kind's ratchet reads
    out = capsys.readouterr().out
    assert "ROVER                -> montage/media/rover.py" in out
    assert "ROVER                branch baseline 50.00 % -> target 55.00 %, measured 50.00 %: NOT met" in out
    assert "W-0  baseline + 5 pp: UNKNOWN" in out  # render.py is in neither the baseline nor the run

    high = _coverage(repo, "high", "pick(1, 1, 1)\npick(0, 0, 0)")  # all 6 branches
    assert repo.ops("coverage-plan", "--data", str(high)) == 0
    out = capsys.readouterr().out
    assert "ROVER                branch baseline 50.00 % -> target 55.00 %, measured 100.00 %: met" in out
    assert "AudioNormalizer      branch baseline n/a -> target n/a, measured 0.00 %: unknown" in out
    assert "W-0  baseline + 5 pp: UNKNOWN" in out and "Weeks met: none of 4" in out

    # targets are capped at 100 %: a W-2 module at 90 % would need 125 %
    base["modules"]["montage/media/render.py"] = {"statements": 10, "covered_lines": 9, "branches": 10,
                                                  "covered_branches": 9, "line": 90.0, "branch": 90.0}  # fmt: skip
    (repo.root / "coverage_base.json").write_text(json.dumps(base))
    assert repo.ops("coverage-plan", "--data", str(high)) == 0
    assert (
        "VideoEffects         branch baseline 90.00 % -> target 100.00 % (capped at 100 %)" in capsys.readouterr().out
    )
