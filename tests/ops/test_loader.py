from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from montage.ops.loader import load_roadmap
from montage.ops.model import Phase

from .conftest import Repo, run_module, simple_phase

GOOD0 = simple_phase(0, "first")

BAD_CASES: dict[str, tuple[str, bytes, str]] = {
    # name: (file name, content, expected message fragment)
    "syntax": ("00-first.yaml", b"id: 0\nslug: [first\n", "YAML syntax error"),
    "tab": ("00-first.yaml", b"id: 0\nslug: first\ngate:\n\t- id: x\n", "tab character"),
    "wrong-type": ("00-first.yaml", GOOD0.replace("id: 0", "id: zero").encode(), "id: Input should be a valid integer"),
    "unknown-key": ("00-first.yaml", (GOOD0 + "colour: red\n").encode(), "unknown key 'colour'"),
    "duplicate-key": ("00-first.yaml", (GOOD0 + "title: again\n").encode(), "duplicate key 'title'"),
    "non-utf8": ("00-first.yaml", b"id: 0\nslug: first\ntitle: caf\xe9\n", "not valid UTF-8"),
    "unknown-kind": (
        "00-first.yaml",
        GOOD0.replace("check: command", "check: telepathy").encode(),
        "unknown check kind",
    ),
    "bad-params": ("00-first.yaml", GOOD0.replace("output_pattern", "output_patern").encode(), "gate.0.with"),
    "bad-regex": ("00-first.yaml", GOOD0.replace('"fine"}', '"(unclosed"}').encode(), "regular expression"),
    "id-mismatch": ("00-first.yaml", simple_phase(3, "first").encode(), "file name says 00"),
    "slug-mismatch": ("00-first.yaml", simple_phase(0, "other").encode(), "file name says 'first'"),
    "bad-filename": ("first.yaml", GOOD0.encode(), "NN-slug.yaml"),
    "empty": ("00-first.yaml", b"", "empty"),
    "not-mapping": ("00-first.yaml", b"- 1\n- 2\n", "expected a mapping"),
    "two-actions": (
        "00-first.yaml",
        (GOOD0 + "steps:\n  - {id: s, run: [a], nox: tests, timeout_s: 1}\n").encode(),
        "exactly one of run, nox or invoke",
    ),
    "missing-timeout": ("00-first.yaml", (GOOD0 + "steps:\n  - {id: s, run: [a]}\n").encode(), "steps.0.timeout_s"),
    "unknown-nox-session": (
        "00-first.yaml",
        (GOOD0 + "steps:\n  - {id: s, nox: nope, timeout_s: 5}\n").encode(),
        "unknown nox session 'nope'",
    ),
    "unknown-invoke-task": (
        "00-first.yaml",
        (GOOD0 + "rollback:\n  - {id: r, invoke: 'nope 1', timeout_s: 5}\n").encode(),
        "unknown invoke task 'nope 1'",
    ),
    "unsplittable-invoke": (
        "00-first.yaml",
        (GOOD0 + "steps:\n  - {id: s, invoke: 'phase.gate \"0', timeout_s: 5}\n").encode(),
        "cannot split",
    ),
    "merge-key": ("00-first.yaml", b"base: &b {x: 1}\nother:\n  <<: *b\n", "merge keys"),
    "custom-tag": ("00-first.yaml", b"id: !!python/object:os.system 0\n", "unsupported tag"),
    "alias-bomb": (
        "00-first.yaml",
        b'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
        + b"".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
            f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n".encode()
            for i in range(8)
        ),
        "alias",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_phase_file_exit_2_with_location(repo: Repo, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    name, content, fragment = BAD_CASES[case]
    path = repo.phases / name
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    before = repo.snapshot()
    for command in (["list"], ["status"], ["gate", "0"], ["run", "0"], ["verify", "all"]):
        assert repo.ops(*command) == 2, (case, command)
        err = capsys.readouterr().err
        assert fragment in err, (case, err)
        assert "Traceback" not in err
        assert str(path) in err
        if case not in {"bad-filename"}:
            assert re.search(re.escape(str(path)) + r":\d+(:\d+)?: ", err), err
        assert len(err.strip().splitlines()) == 1, err
    assert repo.snapshot() == before, "nothing may be written for a bad roadmap"


CROSS_FILE = {
    "duplicate-id": ({"01-other.yaml": simple_phase(0, "other")}, "file name says 01"),
    "duplicate-slug": ({"01-first.yaml": simple_phase(1, "first")}, "slug 'first' is also used"),
    "missing-dep": ({"01-second.yaml": simple_phase(1, "second", deps="[0, 9]")}, "depends_on phase 9"),
    "default-dep-missing": ({"02-third.yaml": simple_phase(2, "third")}, "depends_on phase 1"),
    "cycle": (
        {
            "01-second.yaml": simple_phase(1, "second", deps="[2]"),
            "02-third.yaml": simple_phase(2, "third", deps="[1]"),
        },
        "dependency cycle",
    ),
    "self-cycle": ({"01-second.yaml": simple_phase(1, "second", deps="[1]")}, "dependency cycle"),
}


@pytest.mark.parametrize("case", sorted(CROSS_FILE))
def test_cross_file_errors(repo: Repo, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    repo.phase("00-first.yaml", GOOD0)
    files, fragment = CROSS_FILE[case]
    for name, text in files.items():
        repo.phase(name, text)
    assert repo.ops("list") == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert re.search(r"\.yaml:\d+:\d+: ", err), err
    assert not (repo.phases / ".index.json").exists()


def test_cycle_names_every_edge_with_file_and_line(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.phase("00-first.yaml", GOOD0)
    repo.phase("01-second.yaml", simple_phase(1, "second"))  # depends on 0 by default
    repo.phase("02-third.yaml", simple_phase(2, "third"))  # depends on 1 by default
    # One edit to phase 1 closes the cycle 1 -> 3 -> 2 -> 1 through two files that were not touched.
    repo.phase("01-second.yaml", simple_phase(1, "second", deps="[0, 3]"))
    repo.phase("03-fourth.yaml", simple_phase(3, "fourth", deps="[2]"))
    assert repo.ops("list") == 2
    err = capsys.readouterr().err
    assert "dependency cycle 1 -> 3 -> 2 -> 1" in err, err
    edges = dict(
        (m.group(2), m.group(1)) for m in re.finditer(r"(\d\d-\w+\.yaml:\d+:\d+): (phase \d depends on \d)", err)
    )
    assert set(edges) == {"phase 1 depends on 3", "phase 3 depends on 2", "phase 2 depends on 1"}, err
    assert edges["phase 1 depends on 3"].startswith("01-second.yaml:")
    assert edges["phase 3 depends on 2"].startswith("03-fourth.yaml:")
    assert edges["phase 2 depends on 1"].startswith("02-third.yaml:") and "by default" in err
    line = int(edges["phase 1 depends on 3"].split(":")[1])
    assert "3" in (repo.phases / "01-second.yaml").read_text().splitlines()[line - 1]
    assert len(err.strip().splitlines()) == 1


def test_duplicate_id_same_number_in_two_names(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.phase("00-first.yaml", GOOD0)
    repo.phase("00-again.yaml", simple_phase(0, "again"))
    assert repo.ops("list") == 2
    assert "id 0 is also used by" in capsys.readouterr().err


def test_bad_input_in_a_subprocess_prints_no_traceback(repo: Repo) -> None:
    repo.phase("00-first.yaml", "id: 0\nslug: first\n\ttitle: x\n")
    proc = run_module(["status"], cwd=repo.root)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "00-first.yaml:3:1" in proc.stderr
    assert proc.stdout == ""


def test_missing_phases_dir_and_unknown_phase(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert repo.ops("list") == 2
    assert "does not exist" in capsys.readouterr().err
    repo.phases.mkdir()
    assert repo.ops("list") == 2
    assert "no phase files" in capsys.readouterr().err
    repo.phase("00-first.yaml", GOOD0)
    assert repo.ops("gate", "5") == 2
    assert "there is no phase 5" in capsys.readouterr().err
    assert repo.ops("gate", "x") == 2
    assert "not a phase number" in capsys.readouterr().err
    assert repo.ops("gate", "-1") == 2


def test_valid_roadmap_writes_listing_index(two_phases: Repo) -> None:
    roadmap = load_roadmap(two_phases.phases)
    assert [lp.phase.id for lp in roadmap.ordered()] == [0, 1]
    assert roadmap.get(1).phase.deps == [0]
    index = json.loads((two_phases.phases / ".index.json").read_text())
    assert [p["title"] for p in index["phases"]] == ["Phase 0", "Phase 1"]


def test_definition_hash_ignores_comments_and_key_order(repo: Repo) -> None:
    repo.phase("00-first.yaml", GOOD0)
    first = load_roadmap(repo.phases).get(0).phase.definition_hash()
    reordered = "# a comment\n" + "\n".join(reversed(GOOD0.split("\n", 4)[:4])) + "\n" + GOOD0.split("\n", 4)[4]
    repo.phase("00-first.yaml", reordered)
    assert load_roadmap(repo.phases).get(0).phase.definition_hash() == first
    repo.phase("00-first.yaml", GOOD0.replace("Phase 0", "Phase zero"))
    assert load_roadmap(repo.phases).get(0).phase.definition_hash() != first


REAL_PHASES = Path(__file__).resolve().parents[2] / "phases"


def _test_paths(args: list[str]) -> list[str]:
    return [a.split("::")[0] for a in args if a.startswith("tests") or a.endswith(".py")]


def test_real_roadmap_loads_and_validates() -> None:
    """Invariants of the committed roadmap, not a copy of its contents."""
    import fnmatch
    import importlib.util

    from montage.core import flags as core_flags

    repo = REAL_PHASES.parent
    roadmap = load_roadmap(REAL_PHASES, write_index=False)
    assert sorted(roadmap.phases) == list(range(len(roadmap.phases))) and len(roadmap.phases) >= 8
    tracked = [p.relative_to(repo).as_posix() for p in repo.rglob("*") if ".venv" not in p.parts and p.is_file()]
    for lp in roadmap.ordered():
        phase = lp.phase
        where = f"phase {phase.id} ({lp.path.name})"
        assert all(dep < phase.id for dep in phase.deps), f"{where}: depends on a later phase"
        assert phase.gate and phase.bundle, f"{where}: a phase needs gate checks and bundle artifacts"
        assert phase.rollback, f"{where}: every phase has a rollback (ROADMAP.md)"
        for glob in phase.inputs:
            assert any(fnmatch.fnmatch(t, glob) for t in tracked), f"{where}: input glob {glob!r} matches nothing"
        for check in phase.gate:  # pytest paths name files that exist (tests/ mirrors the package)
            for rel in _test_paths([*check.with_.get("args", []), *check.with_.get("pytest_args", [])]):
                assert (repo / rel).exists(), f"{where}: gate {check.id} runs {rel}, which does not exist"
            for module in check.with_.get("modules", {}) if check.check == "coverage" else {}:
                assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
        declared = {f.name: f for f in phase.flags}
        for flag in phase.flags:  # a flag a phase introduces is registered, with the same default
            assert core_flags.spec(flag.name).default == flag.default, f"{where}: {flag.name} default differs"
        for step in phase.rollback:
            if step.set_flag is None:
                continue
            name = step.set_flag.name
            spec = core_flags.spec(name)  # registered (an unknown name would raise)
            core_flags.validate(name, step.set_flag.value)  # a value the flag accepts
            assert step.set_flag.value != spec.default, f"{where}: rollback sets {name} to its default"
            owner = repo / (spec.owner.split()[0].replace(".", "/"))
            sources = [owner.with_suffix(".py")] if owner.with_suffix(".py").exists() else list(owner.rglob("*.py"))
            assert any(name in p.read_text(encoding="utf-8") for p in sources), f"{where}: {name} unread by owner"
            assert name in declared, f"{where}: the rollback flag {name} is not in the phase's flags"


def test_schema_command_writes_editor_schema(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert two_phases.ops("schema", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    data = json.loads(Path(out["path"]).read_text())
    assert data["title"].startswith("Montage phase file")
    assert "with" in json.dumps(data) and set(data["required"]) >= {"id", "slug", "title", "goal"}
    committed = json.loads((REAL_PHASES / "schema.json").read_text())
    assert committed == data, "phases/schema.json is out of date: run `invoke phase.schema`"


def test_known_sessions_and_tasks_are_accepted(repo: Repo) -> None:
    steps = (
        "steps:\n  - {id: a, nox: phase-3, timeout_s: 5}\n  - {id: b, nox: lint, timeout_s: 5}\n"
        "  - {id: c, invoke: 'phase.gate 0 --json', timeout_s: 5}\n"
    )
    repo.phase("00-first.yaml", GOOD0 + steps)
    phase = load_roadmap(repo.phases).get(0).phase
    assert phase.steps[2].argv() == ["{python}", "-m", "invoke", "phase.gate", "0", "--json"]
    assert phase.steps[0].argv()[-2:] == ["-s", "phase-3"]


def test_phase_model_rejects_duplicate_step_ids() -> None:
    with pytest.raises(ValueError, match="used twice"):
        Phase.model_validate(
            {"id": 0, "slug": "a", "title": "t", "goal": "g",
             "steps": [{"id": "s", "run": ["a"], "timeout_s": 1}, {"id": "s", "run": ["b"], "timeout_s": 1}]}
        )  # fmt: skip
