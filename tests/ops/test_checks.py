from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from montage.ops.checks import KINDS, kind_names, load_kind
from montage.ops.checks.base import CheckContext, Judgement, Verdict

from .conftest import Repo


def measure(repo: Repo, kind: str, params: dict[str, Any], check_id: str = "c") -> tuple[Judgement, Path]:
    """Run a kind for real, then check that re-judging the stored evidence gives the same judgement."""
    module = load_kind(kind)
    p = module.Params.model_validate(params)
    bundle = repo.root / "bundle"
    evidence = bundle / "evidence" / check_id
    evidence.mkdir(parents=True, exist_ok=True)
    ctx = CheckContext(repo_root=repo.root, bundle_dir=bundle, evidence_dir=evidence, phase_id=0, check_id=check_id)
    judgement = module.run(p, ctx)
    assert module.rejudge(p, evidence) == judgement
    for name in judgement.evidence:
        assert (evidence / name).is_file(), name
    return judgement, evidence


def test_registry_lists_every_kind_and_loads_lazily() -> None:
    assert kind_names() == sorted(KINDS)
    assert {"pytest", "coverage", "import_hacks", "stub_scan", "command", "file", "log_contains"} <= set(KINDS)
    for name in KINDS:
        load_kind(name)


def test_load_kind_rejects_incomplete_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, "broken", "montage.ops.checks.base")
    with pytest.raises(TypeError, match="does not define"):
        load_kind("broken")


# --- command -----------------------------------------------------------------------------------


def test_command_pass_fail_pattern_and_timeout(repo: Repo) -> None:
    ok, _ = measure(repo, "command", {"argv": ["{python}", "-c", "print('hello 42')"], "output_pattern": r"hello \d+"})
    assert ok.verdict is Verdict.PASS and ok.value == {"exit_code": 0, "output_matched": True}
    bad, _ = measure(repo, "command", {"argv": ["{python}", "-c", "import sys; print('oops'); sys.exit(3)"]})
    assert bad.verdict is Verdict.FAIL and "exit code 3" in bad.reason and "oops" in bad.reason
    nomatch, _ = measure(repo, "command", {"argv": ["{python}", "-c", "print('x')"], "output_pattern": "^y$"})
    assert nomatch.verdict is Verdict.FAIL and "does not match" in nomatch.reason
    expected_3, _ = measure(repo, "command", {"argv": ["{python}", "-c", "raise SystemExit(3)"], "expect_exit": 3})
    assert expected_3.verdict is Verdict.PASS
    slow, _ = measure(repo, "command", {"argv": ["{python}", "-c", "import time; time.sleep(30)"], "timeout_s": 0.5})
    assert slow.verdict is Verdict.FAIL and "timed out" in slow.reason


def test_command_missing_tool_raises_tool_missing(repo: Repo) -> None:
    from montage.errors import ToolMissing

    with pytest.raises(ToolMissing, match="no-such-tool-xyz"):
        measure(repo, "command", {"argv": ["no-such-tool-xyz"]})


def test_command_rejudge_without_evidence_is_error(tmp_path: Path) -> None:
    module = load_kind("command")
    j = module.rejudge(module.Params.model_validate({"argv": ["x"]}), tmp_path)
    assert j.verdict is Verdict.ERROR


# --- file / log_contains -----------------------------------------------------------------------


def test_file_exists_and_json_fields(repo: Repo) -> None:
    repo.write("out/metrics.json", json.dumps({"verdict": "PASS", "p99": 120.5, "nested": {"errors": 0}}))
    j, ev = measure(repo, "file", {"path": "out/metrics.json"})
    assert j.verdict is Verdict.PASS and (ev / "copy" / "metrics.json").is_file()
    fields = [
        {"field": "verdict", "equals": "PASS"},
        {"field": "p99", "min": 100, "max": 150},
        {"field": "nested.errors", "one_of": [0]},
    ]
    j, _ = measure(repo, "file", {"path": "out/metrics.json", "json": fields})
    assert j.verdict is Verdict.PASS, j.reason
    j, _ = measure(
        repo,
        "file",
        {"path": "out/metrics.json", "json": [{"field": "p99", "max": 100}, {"field": "gone", "equals": 1}]},
    )
    assert j.verdict is Verdict.FAIL and "p99 = 120.5" in j.reason and "gone is missing" in j.reason
    j, _ = measure(repo, "file", {"path": "out/metrics.json", "json": [{"field": "verdict", "min": 1}]})
    assert j.verdict is Verdict.FAIL
    missing, _ = measure(repo, "file", {"path": "out/nothing.json"})
    assert missing.verdict is Verdict.FAIL and "does not exist" in missing.reason
    repo.write("out/bad.json", "{not json")
    bad, _ = measure(repo, "file", {"path": "out/bad.json", "json": [{"field": "a", "equals": 1}]})
    assert bad.verdict is Verdict.FAIL and "not readable JSON" in bad.reason


def test_file_field_expectation_needs_a_condition() -> None:
    module = load_kind("file")
    with pytest.raises(ValueError, match="at least one"):
        module.Params.model_validate({"path": "x", "json": [{"field": "a"}]})


def test_log_contains_counts_lines(repo: Repo) -> None:
    repo.write("var/log/app.log", "Config source=settings_v2\nstarted\nImportError: x\n")
    j, _ = measure(repo, "log_contains", {"path": "var/log/app.log", "pattern": "^Config source=settings_v2$"})
    assert j.verdict is Verdict.PASS and j.value == {"count": 1}
    j, _ = measure(
        repo, "log_contains", {"path": "var/log/app.log", "pattern": "ImportError", "min_count": 0, "max_count": 0}
    )
    assert j.verdict is Verdict.FAIL and j.value == {"count": 1}
    j, _ = measure(repo, "log_contains", {"path": "var/log/none.log", "pattern": "x"})
    assert j.verdict is Verdict.FAIL and "does not exist" in j.reason
    module = load_kind("log_contains")
    with pytest.raises(ValueError):
        module.Params.model_validate({"path": "a", "pattern": "x", "min_count": 2, "max_count": 1})
    with pytest.raises(ValueError):
        module.Params.model_validate({"path": "a", "pattern": "("})


# --- pytest -------------------------------------------------------------------------------------


def _test_project(repo: Repo, body: str) -> None:
    repo.write("pytest.ini", "[pytest]\n")
    repo.write("t/test_x.py", textwrap.dedent(body))


@pytest.mark.slow
def test_pytest_pass_totals_from_junit(repo: Repo) -> None:
    _test_project(repo, "def test_a():\n    assert 1\n\ndef test_b():\n    assert 2\n")
    j, ev = measure(repo, "pytest", {"args": ["-q", "t"], "min_tests": 2})
    assert j.verdict is Verdict.PASS, j.reason
    assert j.value["tests"] == 2 and j.value["passed"] == 2
    assert (ev / "pytest_summary.txt").read_text().startswith("tests=2 passed=2 failed=0")


@pytest.mark.slow
def test_pytest_failure_and_zero_tests(repo: Repo) -> None:
    _test_project(repo, "def test_a():\n    assert 1\n\ndef test_bad():\n    assert 0\n")
    j, ev = measure(repo, "pytest", {"args": ["-q", "t"]})
    assert j.verdict is Verdict.FAIL and "test_bad" in j.reason
    assert "FAILED" in (ev / "pytest_summary.txt").read_text()
    zero, _ = measure(repo, "pytest", {"args": ["-q", "t", "-k", "nothing_matches"]}, check_id="zero")
    assert zero.verdict is not Verdict.PASS and zero.value["tests"] == 0
    absent, _ = measure(repo, "pytest", {"args": ["-q", "does/not/exist"]}, check_id="absent")
    assert absent.verdict in (Verdict.ERROR, Verdict.FAIL)


@pytest.mark.slow
def test_pytest_skip_is_not_measured_unless_allowed_with_a_reason(repo: Repo) -> None:
    _test_project(
        repo,
        """
        import pytest

        def test_a():
            assert 1

        @pytest.mark.skip(reason="ffmpeg is not installed")
        def test_needs_tool():
            pass

        @pytest.mark.parametrize("v", [1, 2])
        def test_cgroup_v2(v):
            pytest.skip("cgroup v1 host")
        """,
    )
    j, ev = measure(repo, "pytest", {"args": ["-q", "t"]})
    assert j.verdict is Verdict.INCONCLUSIVE, j.reason
    assert "3 test(s) skipped" in j.reason and "t.test_x::test_needs_tool (ffmpeg is not installed)" in j.reason
    assert "SKIPPED t.test_x::test_cgroup_v2[1]: cgroup v1 host" in (ev / "pytest_summary.txt").read_text()
    some = [{"test": "t.test_x::test_cgroup_v2[*]", "reason": "cgroup v1 host: the v1 reader is tested instead"}]
    j, _ = measure(repo, "pytest", {"args": ["-q", "t"], "allowed_skips": some}, check_id="some")
    assert j.verdict is Verdict.INCONCLUSIVE and "1 test(s) skipped" in j.reason and "test_needs_tool" in j.reason
    every = [*some, {"test": "t.test_x::test_needs_tool", "reason": "the tool is optional on this phase"}]
    j, _ = measure(repo, "pytest", {"args": ["-q", "t"], "allowed_skips": every}, check_id="every")
    assert j.verdict is Verdict.PASS and "3 skipped (all in allowed_skips)" in j.reason, j.reason


def test_pytest_allowed_skips_are_strict() -> None:
    params = load_kind("pytest").Params
    for bad in (
        [{"test": "t::x"}],  # no reason
        [{"test": "t::x", "reason": ""}],
        [{"test": "t::x", "reason": "r", "until": "2027"}],  # unknown key
        ["t::x"],
    ):
        with pytest.raises(ValueError):
            params.model_validate({"allowed_skips": bad})


# --- coverage -----------------------------------------------------------------------------------


def _coverage_project(repo: Repo) -> None:
    repo.write("pkg/__init__.py", "")
    repo.write("pkg/full.py", "def f(x):\n    if x:\n        return 1\n    return 2\n")
    repo.write("pkg/half.py", "def g(x):\n    if x:\n        return 1\n    return 2\n\ndef h():\n    return 3\n")
    repo.write("pkg/sub/__init__.py", "")
    repo.write("pkg/sub/m.py", "def k():\n    return 1\n")
    repo.write(
        "tests/test_pkg.py",
        "import subprocess, sys\nfrom pkg.full import f\nfrom pkg.half import g\n\n"
        "def test_f():\n    assert f(1) == 1 and f(0) == 2\n\n"
        "def test_g():\n    assert g(1) == 1\n\n"
        "def test_sub_in_subprocess():\n"
        "    out = subprocess.run([sys.executable, '-c', 'from pkg.sub.m import k; print(k())'],"
        " capture_output=True, text=True, timeout=60, check=True)\n"
        "    assert out.stdout.strip() == '1'\n",
    )
    repo.write(
        ".coveragerc",
        "[run]\nsource = pkg\nbranch = true\nparallel = true\npatch = subprocess\n",
    )
    repo.write("pytest.ini", "[pytest]\n")


@pytest.mark.slow
def test_coverage_measures_thresholds_subprocesses_and_missing_modules(repo: Repo) -> None:
    _coverage_project(repo)
    repo.write("coverage_base.json", json.dumps({"global": 40.0}))
    params = {
        "modules": {"pkg.full": 100, "pkg.sub": 100, "pkg.nothere": 50},
        "global_min": 50,
        "ratchet": {"plus_pp": 5},
        "pytest_args": ["-q", "tests"],
    }
    j, ev = measure(repo, "coverage", params)
    assert j.value["modules"]["pkg.full"] == 100.0
    assert j.value["modules"]["pkg.sub"] == 100.0, "coverage must follow the subprocess"
    assert j.value["modules"]["pkg.nothere"] is None
    assert j.verdict is Verdict.INCONCLUSIVE and "pkg.nothere does not exist yet" in j.reason
    strays = [p for p in repo.root.rglob(".coverage*") if p.name != ".coveragerc"]
    assert not strays, f"coverage data files are written outside the repository and cleaned up: {strays}"
    strict = dict(params, modules={"pkg.half": 90})
    j2, _ = measure(repo, "coverage", dict(strict, report="bundle/evidence/c/coverage.json"), check_id="again")
    assert j2.verdict is Verdict.FAIL and "pkg.half" in j2.reason
    ok, _ = measure(
        repo, "coverage", {"modules": {"pkg.full": 90}, "report": "bundle/evidence/c/coverage.json"}, check_id="ok"
    )
    assert ok.verdict is Verdict.PASS, ok.reason


def test_coverage_judges_a_given_report(repo: Repo) -> None:
    root = str(repo.root.resolve())
    report = {
        "files": {
            f"{root}/pkg/a.py": {
                "summary": {"num_statements": 10, "covered_lines": 9, "num_branches": 0, "covered_branches": 0}
            },
            "pkg/b.py": {"summary": {"num_statements": 10, "covered_lines": 5}},
        },
        "totals": {"percent_covered": 70.0},
    }
    repo.write("pkg/__init__.py", "")
    repo.write("pkg/a.py", "x = 1\n")
    repo.write("pkg/b.py", "x = 1\n")
    repo.write("pkg/c.py", "x = 1\n")
    repo.write("cov.json", json.dumps(report))
    j, _ = measure(repo, "coverage", {"modules": {"pkg.a": 90}, "global_min": 60, "report": "cov.json"})
    assert j.verdict is Verdict.PASS and j.value["modules"]["pkg.a"] == 90.0
    j, _ = measure(repo, "coverage", {"modules": {"pkg.b": 60, "pkg.c": 1}, "report": "cov.json"}, check_id="b")
    assert j.verdict is Verdict.FAIL and "pkg.b 50% < 60%" in j.reason and "pkg.c 0% < 1%" in j.reason
    j, _ = measure(repo, "coverage", {"ratchet": {"plus_pp": 5}, "report": "cov.json"}, check_id="r")
    assert j.verdict is Verdict.INCONCLUSIVE and "baseline" in j.reason
    repo.write("coverage_base.json", json.dumps({"global": 66.0}))
    j, _ = measure(repo, "coverage", {"ratchet": {"plus_pp": 5}, "report": "cov.json"}, check_id="r2")
    assert j.verdict is Verdict.FAIL and j.value["ratchet_target"] == 71.0
    j, _ = measure(repo, "coverage", {"global_min": 10, "report": "absent.json"}, check_id="n")
    assert j.verdict is Verdict.ERROR and "no coverage data" in j.reason


@pytest.mark.slow
def test_coverage_reads_cobertura_xml_like_json(repo: Repo) -> None:
    import subprocess
    import sys

    _coverage_project(repo)
    env_free = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("COV_CORE_", "COVERAGE_"))}
    for argv in (
        ["-m", "coverage", "run", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        ["-m", "coverage", "combine", "--quiet"],
        ["-m", "coverage", "xml", "-o", "cov.xml"],
        ["-m", "coverage", "json", "-o", "cov.json"],
    ):
        subprocess.run(
            [sys.executable, *argv], cwd=repo.root, env=env_free, timeout=300, check=True, capture_output=True
        )
    params = {"modules": {"pkg.full": 100, "pkg.half": 90}, "global_min": 10}
    from_json, _ = measure(repo, "coverage", dict(params, report="cov.json"), check_id="json")
    from_xml, ev = measure(repo, "coverage", dict(params, report="cov.xml"), check_id="xml")
    assert (ev / "coverage.xml").is_file()
    assert from_xml.value["modules"] == from_json.value["modules"]
    assert from_xml.verdict is from_json.verdict is Verdict.FAIL
    assert abs(from_xml.value["global"] - from_json.value["global"]) < 0.01
