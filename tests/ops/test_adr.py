"""ADRs in MADR 4 form: figures come from bundles and evidence files; people decide; records stay consistent."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from montage.errors import UsageError
from montage.ops import adr, adr_render
from tests.ops.conftest import Repo

ADR_DIR = Path("docs/adr")


def _front(path: Path) -> str:
    text = path.read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, text[:200]
    return match.group(1)


def _decide(path: Path, option: str = "Option A") -> None:
    text = path.read_text().replace('Chosen option: "to be decided"', f'Chosen option: "{option}"')
    path.write_text(text)


def test_new_with_phase_holds_the_latest_bundles_figures_and_the_evidence(
    two_phases: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = two_phases
    repo.commit_all()
    assert repo.ops("run", "0") == 0
    evidence = repo.write(
        "var/load.json",
        json.dumps({"synthetic": True, "load": "synthetic local load", "date": "2026-12-01T10:00:00Z",
                    "modes": {"merged": {"p99_ms": 81.5, "errors": 0}, "split": {"p99_ms": 64.25, "errors": 0}}}),
    )  # fmt: skip
    manifest = json.loads((repo.proofs / "phase-00" / "latest" / "manifest.json").read_text())
    capsys.readouterr()
    assert repo.ops("adr", "new", "API merge", "--phase", "0", "--evidence", str(evidence)) == 0
    path = repo.root / ADR_DIR / "0001-api-merge.md"
    text = path.read_text()
    front = _front(path)
    assert "status: proposed" in front and "decision-makers: []" in front and "phase: 0" in front
    assert hashlib.sha256(evidence.read_bytes()).hexdigest() in front
    for section in ("Context and Problem Statement", "Decision Drivers", "Considered Options", "Decision Outcome",
                    "Consequences", "Confirmation", "Pros and Cons of the Options", "More Information"):  # fmt: skip
        assert f"## {section}" in text or f"### {section}" in text, section
    # Confirmation: the phase's gate check with the verdict, commit and date of its latest bundle
    confirmation = text.split("### Confirmation", 1)[1].split("## Pros", 1)[0]
    assert f"commit `{manifest['git']['commit'][:12]}`" in confirmation
    assert manifest["finished_at"] in confirmation
    assert "* `ok` (command): **PASS**" in confirmation
    # Context: the figures side by side, with when and how they were measured
    context = text.split("## Decision Drivers", 1)[0]
    assert "| `p99_ms` | 81.5 | 64.25 |" in context
    assert "**Synthetic**: synthetic local load" in context and "When: 2026-12-01T10:00:00Z" in context
    assert 'Chosen option: "to be decided"' in text
    index = (repo.root / ADR_DIR / "README.md").read_text()
    assert "| [0001](0001-api-merge.md) | API merge | proposed |" in index


def test_phase_without_bundle_says_not_run(two_phases: Repo) -> None:
    assert two_phases.ops("adr", "new", "Later", "--phase", "1") == 0
    text = (two_phases.root / ADR_DIR / "0001-later.md").read_text()
    assert "**NOT RUN**: phase 1 has no bundle yet" in text
    assert "* `ok` (command): **NOT RUN**" in text


def test_accept_supersede_and_refresh_keep_peoples_text(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = two_phases
    evidence = repo.write("var/m.json", json.dumps({"modes": {"a": {"x": 1}, "b": {"x": 2}}}))
    assert repo.ops("adr", "new", "First", "--evidence", str(evidence)) == 0
    first = repo.root / ADR_DIR / "0001-first.md"
    assert repo.ops("adr", "accept", "1", "--by", "Ada") == 2  # no chosen option yet
    assert "Chosen option" in capsys.readouterr().err
    _decide(first)
    assert repo.ops("adr", "accept", "1") == 2  # nobody named
    assert "--by NAME" in capsys.readouterr().err
    assert repo.ops("adr", "accept", "1", "--by", "Ada") == 0
    assert "status: accepted" in _front(first) and "decision-makers: [Ada]" in _front(first)
    before = first.read_bytes()
    assert repo.ops("adr", "accept", "1", "--by", "Ada") == 2
    assert "already accepted" in capsys.readouterr().err
    assert first.read_bytes() == before

    # refresh: new figures in, people's edits kept, hash re-recorded
    first.write_text(first.read_text().replace("(people write this)", "Because Ada said so.", 1))
    evidence.write_text(json.dumps({"modes": {"a": {"x": 10}, "b": {"x": 20}}}))
    assert adr.problems(repo.root / ADR_DIR, repo.root)  # the recorded hash no longer matches
    assert repo.ops("adr", "refresh", "1") == 0
    text = first.read_text()
    assert "| `x` | 10 | 20 |" in text and "| `x` | 1 | 2 |" not in text
    assert "Because Ada said so." in text
    assert adr.problems(repo.root / ADR_DIR, repo.root) == []

    assert repo.ops("adr", "new", "Second", "--supersedes", "1") == 0
    second = repo.root / ADR_DIR / "0002-second.md"
    assert "* Supersedes [ADR-0001](0001-first.md) (First)." in second.read_text()
    assert repo.ops("adr", "supersede", "1", "2") == 0
    assert "status: superseded by ADR-0002" in _front(first)
    assert "* Superseded by [ADR-0002](0002-second.md) (Second)." in first.read_text()
    assert "supersedes: 1" in _front(second)
    assert adr.problems(repo.root / ADR_DIR, repo.root) == []
    capsys.readouterr()
    assert repo.ops("adr", "list") == 0
    out = capsys.readouterr().out
    assert "0001  superseded by ADR-0002" in out and "0002  proposed" in out


def test_bad_input_names_the_file_exits_2_and_writes_nothing(
    two_phases: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = two_phases
    assert repo.ops("adr", "new", "!!!") == 2
    assert "no letters or digits" in capsys.readouterr().err
    assert not (repo.root / "docs").exists()
    assert repo.ops("adr", "new", "X", "--supersedes", "7") == 2
    assert "no ADR 0007" in capsys.readouterr().err
    assert repo.ops("adr", "new", "X", "--phase", "9") == 2
    assert "phase 9 does not exist" in capsys.readouterr().err
    assert not (repo.root / "docs").exists()
    assert repo.ops("adr", "new", "Fine") == 0
    assert repo.ops("adr", "supersede", "1", "5") == 2
    assert "no ADR 0005" in capsys.readouterr().err
    path = repo.root / ADR_DIR / "0001-fine.md"
    path.write_text(path.read_text().replace("status: proposed", "status: [oops"))
    snapshot = repo.snapshot()
    for args in (["list"], ["new", "Other"], ["accept", "1", "--by", "Ada"], ["refresh", "1"]):
        assert repo.ops("adr", *args) == 2, args
        err = capsys.readouterr().err
        assert f"{path}: the front matter is not valid YAML" in err, err
    path.write_text(path.read_text().replace("status: [oops", "status: maybe"))
    assert repo.ops("adr", "list") == 2
    assert f"{path}: invalid front matter: status 'maybe' is not one of" in capsys.readouterr().err
    assert repo.snapshot().keys() == snapshot.keys()


def test_duplicate_numbers_are_refused(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = two_phases
    assert repo.ops("adr", "new", "On branch a") == 0
    # the same number drafted on another branch and merged
    src = repo.root / ADR_DIR / "0001-on-branch-a.md"
    (repo.root / ADR_DIR / "0001-on-branch-b.md").write_text(src.read_text().replace("On branch a", "On branch b"))
    capsys.readouterr()
    assert repo.ops("adr", "new", "Third") == 2
    err = capsys.readouterr().err
    assert "ADR number 0001 is used twice" in err and "0001-on-branch-a.md" in err and "0001-on-branch-b.md" in err
    assert repo.ops("adr", "check") == 1


def test_check_finds_broken_links_and_accepted_without_decision(two_phases: Repo) -> None:
    repo = two_phases
    assert repo.ops("adr", "new", "One") == 0
    path = repo.root / ADR_DIR / "0001-one.md"
    assert adr.problems(repo.root / ADR_DIR, repo.root) == []
    path.write_text(path.read_text() + "\nSee [ADR-0004](0004-gone.md).\n")
    assert adr.problems(repo.root / ADR_DIR, repo.root) == [
        f"{path}: links to 0004-gone.md, which does not exist (no ADR 0004)"
    ]
    path.write_text(
        path.read_text()
        .replace("\nSee [ADR-0004](0004-gone.md).\n", "")
        .replace("status: proposed", "status: accepted")
    )
    found = adr.problems(repo.root / ADR_DIR, repo.root)
    assert any("accepted, but Decision Outcome has no" in p for p in found), found
    assert any("decision-makers names nobody" in p for p in found), found
    # phase 4's form: one ADR, which must be accepted
    assert repo.ops("adr", "new", "Two") == 0
    assert any("status is 'proposed', not accepted" in p for p in adr.problems(repo.root / ADR_DIR, repo.root, 2))


def test_template_missing_value_names_template_and_line() -> None:
    with pytest.raises(
        UsageError, match=r"template adr_index\.md\.j2, line \d+: 'dict object' has no attribute 'makers'"
    ):
        row = {"number": "0001", "file": "f.md", "title": "t", "status": "proposed", "date": "2026-12-01", "phase": 1}
        adr_render.render("adr_index.md.j2", adrs=[row])


def test_the_repositorys_adrs_are_consistent() -> None:
    """Duplicate numbers, broken links, an accepted ADR without a decision, a stale evidence hash: fail here."""
    root = Path(__file__).resolve().parents[2]
    assert adr.problems(root / ADR_DIR, root) == []
    records = adr.load_all(root / ADR_DIR)
    assert (root / ADR_DIR / "README.md").read_text() == adr.index_text(records)


def test_a_check_redefined_since_the_bundle_has_no_result(two_phases: Repo) -> None:
    repo = two_phases
    repo.commit_all()
    assert repo.ops("run", "0") == 0
    repo.phase("00-first.yaml", (repo.phases / "00-first.yaml").read_text().replace(
        'check: command\n    with: {argv: ["{python}", "-c", "print(\'fine\')"], output_pattern: "fine"}',
        "check: file\n    with: {path: src/app.py}"))  # fmt: skip
    assert "check: file" in (repo.phases / "00-first.yaml").read_text()
    assert repo.ops("adr", "new", "Redefined", "--phase", "0") == 0
    text = (repo.root / ADR_DIR / "0001-redefined.md").read_text()
    assert "**STALE**" in text and "not current" in text
    assert (
        "* `ok` (file): **NOT RUN**; the latest bundle judged an earlier definition of this check (kind command)"
        in text
    )
