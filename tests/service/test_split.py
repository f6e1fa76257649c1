"""Split mode (phase 4's rollback): the public and admin routers as two apps, two processes, two ports."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import httpx
import psutil
import pytest

from montage.core.loopback import free_port as _free_port
from montage.errors import UsageError
from montage.ops import rollback
from montage.ops.bundle import ProofsLayout
from montage.ops.loader import load_roadmap
from montage.service.loadtest import served_process
from montage.service.split import FLAG, admin_port
from tests.service.conftest import create_key_sync, make_loaded

REPO = Path(__file__).resolve().parents[2]


def _statuses(public: str, admin: str, key: str) -> dict[str, int]:
    headers = {"X-API-Key": key}
    return {
        "public on public port": httpx.get(f"{public}/v1/public/health").status_code,
        "admin on public port": httpx.get(f"{public}/v1/admin/jobs", headers=headers).status_code,
        "admin on admin port": httpx.get(f"{admin}/v1/admin/jobs", headers=headers).status_code,
        "public on admin port": httpx.get(f"{admin}/v1/public/health").status_code,
    }


def _admin_child(pid: int) -> list[psutil.Process]:
    return [c for c in psutil.Process(pid).children() if "montage.service.split" in " ".join(c.cmdline())]


def test_split_mode_serves_each_router_only_on_its_own_port_and_drains_both(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    port = _free_port()
    with served_process(url, tmp_path, {"MONTAGE_SERVICE__SPLIT_ADMIN_PORT": str(port)}) as (base, proc):
        _key_id, key = create_key_sync(url)
        admin = f"http://127.0.0.1:{port}"
        assert _statuses(base, admin, key) == {
            "public on public port": 200,
            "admin on public port": 404,
            "admin on admin port": 200,
            "public on admin port": 404,
        }
        assert httpx.get(f"{admin}/v1/admin/jobs").status_code == 401  # the admin app still needs its key
        (child,) = _admin_child(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        child.wait(timeout=30)
        logs = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
        assert "admin app" not in logs  # logged (at WARNING) only when it did not exit 0 after draining
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{admin}/v1/admin/jobs")


def test_phase4_rollback_switches_montage_serve_to_the_split_apps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = tmp_path / "flags.json"
    monkeypatch.setenv("MONTAGE_OPS__FLAGS_FILE", str(flags))
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    # before: the merged app answers admin routes on the public port
    with served_process(url, tmp_path) as (base, proc):
        _key_id, key = create_key_sync(url)
        assert httpx.get(f"{base}/v1/admin/jobs", headers={"X-API-Key": key}).status_code == 200
        assert _admin_child(proc.pid) == []

    phase = load_roadmap(REPO / "phases").get(4).phase
    code, record = rollback.execute(phase, tmp_path, ProofsLayout(tmp_path / "proofs"), lambda _line: None)
    assert code == 0, record
    written = json.loads(flags.read_text())
    assert written == {FLAG: 8001}
    with socket.socket() as s:
        busy = s.connect_ex(("127.0.0.1", 8001)) == 0
    if busy:  # another service on this host holds 8001: same switch, a free port
        flags.write_text(json.dumps({FLAG: _free_port()}))
    chosen = json.loads(flags.read_text())[FLAG]

    # after: admin routes answer on the admin port only
    with served_process(url, tmp_path) as (base, proc):
        assert len(_admin_child(proc.pid)) == 1
        assert _statuses(base, f"http://127.0.0.1:{chosen}", key) == {
            "public on public port": 200,
            "admin on public port": 404,
            "admin on admin port": 200,
            "public on admin port": 404,
        }


def test_setting_beats_the_flag_and_a_bad_flag_names_the_file(tmp_path: Path) -> None:
    flags = tmp_path / "flags.json"
    url = "sqlite+aiosqlite:///unused.db"
    assert admin_port(make_loaded(tmp_path, url)) is None  # no flag, no setting: merged
    flags.write_text(json.dumps({FLAG: 9101}))
    assert admin_port(make_loaded(tmp_path, url)) == 9101
    assert admin_port(make_loaded(tmp_path, url, split_admin_port=9202)) == 9202
    flags.write_text(json.dumps({FLAG: False}))
    assert admin_port(make_loaded(tmp_path, url)) is None
    for bad in ("abc", True, 70000, -1):
        flags.write_text(json.dumps({FLAG: bad}))
        with pytest.raises(UsageError, match=rf"flag {FLAG}=.* \(flags file {flags}\) is not a port"):
            admin_port(make_loaded(tmp_path, url))
