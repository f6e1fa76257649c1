"""ADR drafts: figures come from bundles and evidence files; nothing is decided or invented."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.ops.conftest import Repo


def test_draft_copies_bundle_results_and_evidence(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = two_phases
    assert repo.ops("run", "0") == 0
    evidence = repo.write("var/load.json", json.dumps({"sqlite": {"p99_ms": 81.5, "errors": 0}, "rate": 25}))
    capsys.readouterr()
    assert repo.ops("adr", "1", "--title", "API merge", "--evidence", str(evidence)) == 0
    path = repo.root / "docs" / "adr" / "0001-api-merge.md"
    text = path.read_text()
    assert text.startswith("# ADR 0001: API merge\n\nStatus: Proposed\n")
    assert "Phase 0 (Phase 0): **PASS**, bundle `proofs/phase-00/latest`" in text
    assert "check `ok` (command): PASS: exit code 0 and the output matched" in text
    assert "Phase 1 (Phase 1): **NOT RUN** (no bundle)" in text
    digest = hashlib.sha256(evidence.read_bytes()).hexdigest()[:16]
    assert f"`var/load.json` (sha256 `{digest}`)" in text
    assert "`sqlite.p99_ms` = 81.5" in text and "`rate` = 25" in text
    assert "the generator never decides" in text
    # numbering continues; an existing record is never overwritten silently
    assert repo.ops("adr", "1", "--title", "Second one") == 0
    assert (repo.root / "docs" / "adr" / "0002-second-one.md").is_file()
    assert repo.ops("adr", "1", "--title", "API merge", "--number", "1") == 2
    assert "already exists" in capsys.readouterr().err
    assert repo.ops("adr", "1", "--title", "API merge", "--number", "1", "--force") == 0


def test_bad_inputs_exit_2_and_write_nothing(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = two_phases
    bad = repo.write("var/bad.json", "{not json")
    assert repo.ops("adr", "1", "--title", "X", "--evidence", str(bad)) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert repo.ops("adr", "1", "--title", "X", "--evidence", str(repo.root / "missing.json")) == 2
    assert repo.ops("adr", "9", "--title", "X") == 2
    assert "phase 9 does not exist" in capsys.readouterr().err
    assert repo.ops("adr", "1", "--title", "!!!") == 2
    assert not (repo.root / "docs").exists()


def test_stdout_prints_without_writing(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert two_phases.ops("adr", "0", "--title", "Only print", "--stdout") == 0
    assert "# ADR 0001: Only print" in capsys.readouterr().out
    assert not (two_phases.root / "docs").exists()
