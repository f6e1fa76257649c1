from pathlib import Path

from montage.errors import (
    EXIT_CODE_DESCRIPTIONS,
    ExitCode,
    MediaError,
    MontageError,
    ValidationFailure,
    exit_code_for,
)

README = Path(__file__).resolve().parent.parent / "README.md"


def test_exit_code_table_matches_issue() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "FAIL": 1,
        "USAGE": 2,
        "INCONCLUSIVE": 3,
        "PARTIAL": 4,
        "TAMPERED": 5,
        "REFUSED": 6,
        "TOOL_MISSING": 7,
        "MEDIA": 8,
        "INTERRUPTED": 130,
    }
    assert set(EXIT_CODE_DESCRIPTIONS) == set(ExitCode)


def test_readme_documents_every_exit_code() -> None:
    text = README.read_text(encoding="utf-8")
    for code in ExitCode:
        assert f"| {int(code)} |" in text, f"README exit-code table lacks {int(code)}"


def test_validation_failure_names_location() -> None:
    err = ValidationFailure("expected an integer", path="phases/01-x.yaml", line=3, column=5)
    assert str(err) == "phases/01-x.yaml:3:5: expected an integer"
    assert err.exit_code == ExitCode.USAGE


def test_exit_code_for_maps_hierarchy() -> None:
    assert exit_code_for(MediaError("bad", stderr_tail="x")) == ExitCode.MEDIA
    assert exit_code_for(KeyboardInterrupt()) == ExitCode.INTERRUPTED
    assert exit_code_for(ValueError()) == ExitCode.FAIL
    assert MontageError("m", hint="h").__str__() == "m h"
