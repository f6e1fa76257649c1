"""The generated invoke tasks and nox sessions pass exit codes through unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from montage.ops import index, sessions
from montage.ops.invoke_tasks import build_namespace

from .conftest import Repo, simple_phase

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    exe = BIN / name
    return str(exe) if exe.exists() else name


def _run(argv: list[str], repo: Repo, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MONTAGE_REPO_ROOT=str(repo.root))
    return subprocess.run(argv, cwd=repo.root, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_namespace_has_phase_tasks_and_table_tasks() -> None:
    ns = build_namespace()
    names = set(ns.task_names)
    assert {"phase.list", "phase.status", "phase.run", "phase.gate", "phase.verify", "phase.rollback"} <= names
    assert {"phase.schema", "lint", "scan", "tests"} <= names
    assert ns.collections["phase"].tasks["run"].positional == ["phase"]


def test_dotted_table_tasks_become_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sessions.INVOKE_TASKS, "perf.guard", [["{python}", "-c", "pass"]])
    ns = build_namespace()
    assert "perf.guard" in ns.task_names


@pytest.mark.slow
def test_invoke_passes_exit_codes_through(repo: Repo) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first"))
    partial = 'gate:\n  - {id: ok, check: command, with: {argv: ["{python}", "-c", "pass"]}}\nbundle: [missing.txt]\n'
    repo.phase("01-second.yaml", simple_phase(1, "second", gate=partial))
    inv = [_tool("invoke"), "--search-root", str(PROJECT)]
    assert _run([*inv, "phase.run", "1"], repo).returncode == 6
    assert _run([*inv, "phase.run", "0"], repo).returncode == 0  # a bare positional number works
    assert _run([*inv, "phase.gate", "1"], repo).returncode == 4
    assert _run([*inv, "phase.verify", "0"], repo).returncode == 0
    status = _run([*inv, "phase.status", "--json"], repo)
    assert status.returncode == 0 and json.loads(status.stdout)[0]["state"] == "PASS"
    (repo.proofs / "phase-00" / "latest" / "summary.md").write_text("edited\n")
    verify = _run([*inv, "phase.verify", "0"], repo)
    assert verify.returncode == 5 and "summary.md was modified" in verify.stdout
    assert _run([*inv, "phase.rollback", "0"], repo).returncode == 0
    listing = _run([_tool("invoke"), "--search-root", str(PROJECT), "--list"], repo)
    assert "phase.run" in listing.stdout


@pytest.mark.slow
def test_nox_sessions_pass_exit_codes_through(repo: Repo) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first"))
    partial = 'gate:\n  - {id: ok, check: command, with: {argv: ["{python}", "-c", "pass"]}}\nbundle: [missing.txt]\n'
    repo.phase("01-second.yaml", simple_phase(1, "second", gate=partial))
    nox = [_tool("nox"), "-f", str(PROJECT / "noxfile.py")]
    listing = _run([*nox, "-l"], repo)
    assert listing.returncode == 0 and "phase-0" in listing.stdout and "phase-1" in listing.stdout
    assert "phase-2" not in listing.stdout  # the fixture roadmap, not the real one
    assert _run([*nox, "-s", "phase-1"], repo).returncode == 6
    assert _run([*nox, "-s", "phase-0"], repo).returncode == 0
    partial_run = _run([*nox, "-s", "phase-1"], repo)
    assert partial_run.returncode == 4, partial_run.stderr  # PARTIAL passes through; nox itself only knows 0/1


def test_run_chain_stops_at_first_failure_and_appends_extra(tmp_path: Path) -> None:
    marker = tmp_path / "second"
    chain = [["{python}", "-c", "raise SystemExit(4)"], ["{python}", "-c", f"open({str(marker)!r}, 'w')"]]
    assert sessions.run_chain(chain, cwd=tmp_path) == 4
    assert not marker.exists()
    ok = [["{python}", "-c", "import sys; open(sys.argv[1], 'w')"]]
    assert sessions.run_chain(ok, extra=[str(marker)], cwd=tmp_path) == 0 and marker.exists()
    assert sessions.run_chain([["{python}", "-c", "import time; time.sleep(5)"]], cwd=tmp_path, timeout_s=0.3) == 1


def test_flag_disables_a_session_loudly(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = repo.root / "ran"
    chain = [["{python}", "-c", f"open({str(marker)!r}, 'w')"]]
    monkeypatch.setenv("MONTAGE_REPO_ROOT", str(repo.root))
    assert sessions.disabled_by_flag("perf") is None
    repo.write("var/flags.json", json.dumps({"PERF_GUARD_ENABLED": False}))
    assert sessions.run_named("perf", chain) == 0
    assert "perf is disabled: flag PERF_GUARD_ENABLED=false" in capsys.readouterr().err and not marker.exists()
    repo.write("var/flags.json", json.dumps({"PERF_GUARD_ENABLED": True}))
    assert sessions.run_named("perf", chain) == 0 and marker.exists()
    assert sessions.disabled_by_flag("tests") is None


def test_listing_index_cache_and_fallback(repo: Repo) -> None:
    repo.phase("00-first.yaml", simple_phase(0, "first"))
    assert index.read(repo.phases) == [(0, "first", "first")]  # no cache: from file names
    index.write(repo.phases, [(0, "first", "The first phase")])
    assert index.read(repo.phases) == [(0, "first", "The first phase")]
    repo.phase("01-second.yaml", simple_phase(1, "second"))  # cache now stale
    assert index.read(repo.phases) == [(0, "first", "first"), (1, "second", "second")]
    (repo.phases / ".index.json").write_text("{broken")
    assert [i for i, _, _ in index.read(repo.phases)] == [0, 1]


def test_repo_root_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONTAGE_REPO_ROOT", raising=False)
    (tmp_path / "phases").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert sessions.repo_root() == tmp_path
