from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from montage.ops import cli
from montage.ops.checks import load_kind
from montage.ops.checks.base import Verdict

from .conftest import Repo

PROJECT = Path(__file__).resolve().parents[2]


def test_scan_command_reports_and_exits(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.phases.mkdir()
    assert repo.ops("scan") == 0
    assert "import_hacks: 0" in capsys.readouterr().out
    repo.write("bad.py", "import sys\nsys.path.insert(0, 'x')\n\n\ndef todo():\n    pass\n")
    assert repo.ops("scan", "--json") == 1
    data = json.loads(capsys.readouterr().out)
    assert [f["line"] for f in data["import_hacks"]] == [2] and data["stub_scan"][0]["name"] == "todo"
    repo.write("phases/stub_allowlist.txt", "bad.py::todo  # kept on purpose\n")
    assert repo.ops("scan", "--kind", "stub_scan") == 0
    assert "1 allowed" in capsys.readouterr().out
    repo.write("allow.txt", "bad.py::todo\n")
    assert repo.ops("scan", "--kind", "stub_scan", "--allowlist", "allow.txt") == 2
    assert "has no reason" in capsys.readouterr().err
    repo.write("bad.py", "def (:\n")
    assert repo.ops("scan") == 3
    assert "cannot parse bad.py:1" in capsys.readouterr().out


def test_stub_scan_script_is_a_thin_entry_point(repo: Repo) -> None:
    repo.phases.mkdir()
    repo.write("m.py", "def later():\n    raise NotImplementedError\n")
    proc = subprocess.run(
        [sys.executable, str(PROJECT / "scripts" / "stub_scan.py"), "--repo-root", str(repo.root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and "m.py:1: stub later (raise NotImplementedError)" in proc.stdout


def test_usage_errors_and_internal_errors(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["frobnicate"]) == 2
    assert cli.main([]) == 2
    capsys.readouterr()

    def boom(ctx: cli.Ctx) -> int:
        raise RuntimeError("unexpected")

    monkeypatch.setitem(cli.COMMANDS, "list", boom)
    assert repo.ops("list") == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: unexpected" in err and "Traceback" not in err
    assert repo.ops("list", "--debug") == 1
    assert "Traceback" in capsys.readouterr().err


def test_environment_selects_phases_and_proofs_dirs(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from .conftest import simple_phase

    repo.write("roadmap/00-first.yaml", simple_phase(0, "first"))
    monkeypatch.setenv("MONTAGE_OPS__PHASES_DIR", "roadmap")
    monkeypatch.setenv("MONTAGE_OPS__BUNDLES_DIR", "evidence-store")
    assert repo.ops("run", "0", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "PASS" and "evidence-store/phase-00/runs/" in data["bundle"]
    assert (repo.root / "evidence-store" / "phase-00" / "latest" / "manifest.json").is_file()


def test_pytest_rejudge_without_report_is_error(tmp_path: Path) -> None:
    module = load_kind("pytest")
    params = module.Params()
    assert module.rejudge(params, tmp_path).verdict is Verdict.ERROR
    (tmp_path / "pytest.json").write_text(json.dumps({"exit_code": 2, "timed_out": False}))
    j = module.rejudge(params, tmp_path)
    assert j.verdict is Verdict.ERROR and "junit.xml is missing" in j.reason
    (tmp_path / "junit.xml").write_text("<testsuites><testsuite tests='1'")
    assert "not valid XML" in module.rejudge(params, tmp_path).reason
    (tmp_path / "junit.xml").write_text("<testsuite tests='3' failures='0' errors='0' skipped='0'/>")
    j = module.rejudge(params, tmp_path)
    assert j.verdict is Verdict.ERROR and "exited 2 although" in j.reason


def test_common_options_count_before_and_after_the_command(
    repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--proofs-dir X run 0`` writes into X: the subcommand's copy of the option used to overwrite the main
    parser's value with its default, so the bundle went to the repository's real proofs/."""
    from .conftest import simple_phase

    repo.write("phases/00-first.yaml", simple_phase(0, "first"))
    for where, argv in {"before": ["--proofs-dir", str(tmp_path / "before"), "run", "0", "--json"],
                        "after": ["run", "0", "--json", "--proofs-dir", str(tmp_path / "after")]}.items():  # fmt: skip
        assert repo.ops(*argv) == 0, where
        assert str(tmp_path / where / "phase-00" / "runs") in json.loads(capsys.readouterr().out)["bundle"], where
    assert not (repo.root / "proofs" / "phase-00").exists()
    assert cli.build_parser().parse_args(["--json", "--debug", "list"]).json is True
