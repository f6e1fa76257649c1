"""montage.core.flags: the path, the registry, the one truthiness rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage.core import flags
from montage.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", [True, 1, "1", "true", "TRUE", " yes ", "On"])
def test_true_forms(value: object) -> None:
    assert flags.truthy("WORKERS_PAUSED", value) is True


@pytest.mark.parametrize("value", [False, 0, "0", "false", "False", "no", "OFF "])
def test_false_forms(value: object) -> None:
    assert flags.truthy("WORKERS_PAUSED", value) is False


@pytest.mark.parametrize("value", [2, -1, 0.0, 1.5, "", "maybe", "enabled", None, [], {}])
def test_anything_else_is_an_error_naming_flag_and_value(value: object) -> None:
    with pytest.raises(flags.FlagError) as info:
        flags.truthy("WORKERS_PAUSED", value, "flags file x.json")
    assert f"WORKERS_PAUSED={json.dumps(value)} (flags file x.json)" in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(flags.FlagError, match="unknown flag 'PERF_GUARD'; known flags: .*PERF_GUARD_ENABLED"):
        flags.validate("PERF_GUARD", True)


def test_unset_flags_take_the_registry_default() -> None:
    assert flags.enabled({}, "PERF_GUARD_ENABLED") is True
    assert flags.enabled({"PERF_GUARD_ENABLED": None}, "PERF_GUARD_ENABLED") is True
    assert flags.enabled({}, "SUBMISSIONS_PAUSED") is False


def test_path_resolution(tmp_path: Path) -> None:
    assert flags.flags_path(environ={}) == Path("var/flags.json")
    assert flags.flags_path(environ={flags.ENV_VAR: "/x/f.json"}) == Path("/x/f.json")
    assert flags.flags_path("mine.json", environ={flags.ENV_VAR: "/x/f.json"}) == Path("mine.json")
    assert flags.flags_path(environ={flags.ENV_VAR: "rel.json"}, root=tmp_path) == tmp_path / "rel.json"
    assert flags.flags_path(environ={flags.ENV_VAR: "/abs.json"}, root=tmp_path) == Path("/abs.json")


def test_write_and_restore_leave_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    before = flags.write_flag(path, "WORKERS_PAUSED", True)
    assert before is None and flags.read_flags(path) == {"WORKERS_PAUSED": True}
    flags.restore_file(path, before)
    assert not path.exists()
    path.write_text('{"SUBMISSIONS_PAUSED": "no"}')
    before = flags.write_flag(path, "WORKERS_PAUSED", True)
    flags.restore_file(path, before)
    assert path.read_text() == '{"SUBMISSIONS_PAUSED": "no"}'


def test_bad_flags_file_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text('{"A": tru}')
    with pytest.raises(Exception, match=f"{path}:1:7: the flags file is not valid JSON"):
        flags.read_flags(path)


def test_every_flag_the_phase_files_name_is_registered() -> None:
    import yaml

    named: set[str] = set()
    for phase in (REPO / "phases").glob("*.yaml"):
        doc = yaml.safe_load(phase.read_text(encoding="utf-8"))
        named |= {f["name"] for f in doc.get("flags") or []}
        named |= {s["set_flag"]["name"] for s in doc.get("rollback") or [] if s.get("set_flag")}
        for f in doc.get("flags") or []:
            if "default" in f:
                assert flags.REGISTRY[f["name"]].default == f["default"], phase
    assert named and named <= set(flags.REGISTRY)
