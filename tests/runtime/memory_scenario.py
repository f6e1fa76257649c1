"""Run in a child interpreter by test_memory_done_when.py (inside a 1 GiB child cgroup when one can be made).

``python -m tests.runtime.memory_scenario DB_URL ADMIN_KEY TMP`` prints one JSON object: the memory
figures read independently from the cgroup's own files, ``get_available_mb()``, what a real server's
``/v1/admin/stats`` says, and ``montage_orphans_reaped_total`` scraped from its ``/metrics`` after
the service (a subreaper, as ``montage serve`` is) reaped one adopted orphan.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from montage.runtime.memory_manager import get_available_mb, read_memory
from montage.runtime.reaper import reaping
from tests.runtime.reaper_scenario import orphan
from tests.service.conftest import ServerThread, make_loaded

MIB = 1024 * 1024


def independent() -> dict[str, Any]:
    """The own memory cgroup's limit and working set, read straight from the standard mount points."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            limit, usage = (int((base / n).read_text()) for n in ("memory.limit_in_bytes", "memory.usage_in_bytes"))
            inactive_key = "total_inactive_file"
            break
    else:
        path = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
        base = Path("/sys/fs/cgroup") / path.lstrip("/")
        raw = (base / "memory.max").read_text().strip()
        limit = -1 if raw == "max" else int(raw)
        usage = int((base / "memory.current").read_text())
        inactive_key = "inactive_file"
    stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines())
    working_set = usage - int(stat[inactive_key])
    return {"cgroup": str(base), "limit_mb": limit / MIB, "working_set_mb": working_set / MIB,
            "available_mb": (limit - working_set) / MIB}  # fmt: skip


async def main(db_url: str, key: str, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"independent": independent(), "get_available_mb": get_available_mb()}
    out["independent_after"] = independent()
    from montage.service.app import create_app

    loaded = make_loaded(tmp, db_url)
    out["reading"] = read_memory(loaded.settings).__dict__
    async with reaping(tmp / "flags.json", interval_s=0.05) as reaper:
        assert reaper is not None
        with ServerThread(create_app(loaded)) as base:
            stats = (await asyncio.to_thread(httpx.get, f"{base}/v1/admin/stats", headers={"X-API-Key": key})).json()
            out["stats_memory"] = stats["memory"]
            grandchild, _ = await orphan(reaper)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and grandchild not in {r.pid for r in reaper.reaped}:
                await asyncio.sleep(0.05)
            text = (await asyncio.to_thread(httpx.get, f"{base}/metrics")).text
    out["reaped"] = [r.pid for r in reaper.reaped]
    out["grandchild"] = grandchild
    out["metrics"] = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                      if s.name.startswith(("montage_orphans", "montage_memory"))}  # fmt: skip
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))))
