"""Run in a child interpreter by test_reaper.py: the subreaper attribute must not leak into pytest.

``python -m tests.runtime.reaper_scenario FLAGS_FILE`` prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from montage.runtime.reaper import OrphanReaper, is_subreaper, process_table, reaping, set_subreaper

# The intermediate forks a grandchild, prints its pid, waits for a byte on stdin, then exits; the
# grandchild exits 7 as soon as the intermediate is gone (EOF on the pipe only the intermediate writes).
DOUBLE_FORK = """
import os, sys
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    os.read(r, 1)
    os._exit(7)
os.close(r)
print(pid, flush=True)
sys.stdin.buffer.read(1)
os._exit(0)
"""


def zombies_of(pid: int) -> list[int]:
    return sorted(s.pid for s in process_table().values() if s.ppid == pid and s.state == "Z")


async def orphan(reaper: OrphanReaper | None) -> tuple[int, int]:
    """Start a double fork; returns (grandchild pid, intermediate exit code) once the intermediate is gone."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DOUBLE_FORK, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdin is not None
    grandchild = int((await proc.stdout.readline()).decode())
    if reaper is not None:
        reaper.scan()  # the grandchild is seen while its parent is alive, as in a service (renders run long)
    proc.stdin.write(b"x")
    await proc.stdin.drain()
    return grandchild, await proc.wait()


async def concurrent(n: int) -> list[tuple[int, int]]:
    """n asyncio subprocesses and 5 subprocess.run calls in threads; (expected, actual) exit codes."""

    async def one(code: int) -> tuple[int, int]:
        script = f"import time, sys; time.sleep({(code % 4) * 0.03}); sys.exit({code})"
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
        return code, await proc.wait()

    def blocking(code: int) -> tuple[int, int]:
        return code, subprocess.run([sys.executable, "-c", f"raise SystemExit({code})"], check=False).returncode

    tasks = [one(code) for code in range(1, n + 1)]
    threads = [asyncio.to_thread(blocking, code) for code in range(100, 105)]
    return list(await asyncio.gather(*tasks, *threads))


async def wait_zombie(pid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stat = process_table().get(pid)
        if stat is not None and stat.state == "Z" and stat.ppid == os.getpid():
            return True
        await asyncio.sleep(0.02)
    return False


async def main(flags_file: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"pid": os.getpid()}
    async with reaping(flags_file, interval_s=0.02) as reaper:
        out["reaper_running"] = reaper is not None
        out["subreaper"] = is_subreaper()
        if reaper is None:
            # Negative control: adopted (subreaper set by hand) but nobody reaps -> the zombie stays.
            set_subreaper(True)
            grandchild, intermediate_rc = await orphan(None)
            out["zombie_seen"] = await wait_zombie(grandchild)
            await asyncio.sleep(1.0)
            out["zombies_after_1s"] = zombies_of(os.getpid())
            info = os.waitid(os.P_PID, grandchild, os.WEXITED)  # the test cleans up
            out["cleaned_exit"] = info.si_status if info else None
        else:
            results = await asyncio.gather(concurrent(30), *(orphan(reaper) for _ in range(3)))
            out["codes"] = results[0]
            out["orphans"] = [list(r) for r in results[1:]]
            deadline = time.monotonic() + 30
            wanted = {g for g, _ in results[1:]}
            while time.monotonic() < deadline and not wanted <= {r.pid for r in reaper.reaped}:
                await asyncio.sleep(0.05)
            out["reaped"] = [[r.pid, r.exit_code] for r in reaper.reaped]
            out["zombies_left"] = zombies_of(os.getpid())
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
