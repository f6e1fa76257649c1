"""The orphan reaper: exit codes of the service's own children stay intact, adopted orphans are reaped."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from montage.runtime.reaper import parse_stat, reaper_enabled

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_CHILD_SUBREAPER is Linux only")


def scenario(tmp_path: Path, flags: dict[str, Any]) -> dict[str, Any]:
    flags_file = tmp_path / "flags.json"
    flags_file.write_text(json.dumps(flags))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.runtime.reaper_scenario", str(flags_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_thirty_concurrent_subprocesses_keep_their_exit_codes_and_orphans_are_reaped(tmp_path: Path) -> None:
    out = scenario(tmp_path, {})
    assert out["reaper_running"] and out["subreaper"]
    assert len(out["codes"]) == 35
    assert all(expected == actual for expected, actual in out["codes"]), out["codes"]
    grandchildren = {g for g, _ in out["orphans"]}
    assert all(rc == 0 for _, rc in out["orphans"])  # the intermediates: our own children, exit 0 intact
    reaped = {pid: code for pid, code in out["reaped"]}
    assert grandchildren <= set(reaped), out
    assert all(reaped[g] == 7 for g in grandchildren)
    own = {code for code, _ in out["codes"]}
    assert not own & set(reaped)  # nothing but orphans was reaped (codes are small, pids are not)
    assert out["zombies_left"] == []


@pytest.mark.parametrize("value", [False, "false", "off", 0])
def test_flag_false_turns_the_reaper_off_and_orphan_zombies_remain(tmp_path: Path, value: object) -> None:
    out = scenario(tmp_path, {"ZOMBIE_REAPER_ENABLED": value})
    assert out["reaper_running"] is False
    assert out["subreaper"] is False
    assert out["zombie_seen"] is True
    assert len(out["zombies_after_1s"]) == 1  # nobody reaped it: the test collected it itself
    assert out["cleaned_exit"] == 7


def test_flag_defaults_to_on(tmp_path: Path) -> None:
    assert reaper_enabled(tmp_path / "absent.json")[0] is True
    (tmp_path / "f.json").write_text('{"ZOMBIE_REAPER_ENABLED": "yes"}')
    assert reaper_enabled(tmp_path / "f.json")[0] is True


def test_parse_stat_handles_parentheses_and_spaces_in_comm() -> None:
    line = "4242 (a) b (c)) Z 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0\n"
    stat = parse_stat(line)
    assert stat is not None and (stat.pid, stat.state, stat.ppid, stat.start_time) == (4242, "Z", 17, 987654)
    assert parse_stat("garbage") is None


def test_reaping_leaves_the_process_as_it_found_it(tmp_path: Path) -> None:
    # an in-process service (a test's uvicorn thread) must not leave pytest a subreaper that never reaps
    code = (
        "import asyncio, pathlib\n"
        "from montage.runtime import reaper\n"
        "async def main():\n"
        "    before = reaper.is_subreaper()\n"
        f"    async with reaper.reaping(pathlib.Path({str(tmp_path / 'flags.json')!r})) as r:\n"
        "        during = reaper.is_subreaper() and r is not None\n"
        "    print(before, during, reaper.is_subreaper())\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "True", "False"], done.stderr


def test_a_zombie_is_not_a_live_worker() -> None:
    from montage.service.supervisor import _start_ticks

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.05)
        assert _start_ticks(child.pid) is None  # exited, not yet reaped: not alive
    finally:
        child.wait()
