"""Issue 8's done-when: every spelling of a flag value means the same to every component.

Each form is set the way a user would (``montage flags set NAME VALUE``, or a hand-written JSON
integer in the flags file picked up when the service starts), then each component that reads a
flag is driven for real: settings (USE_SETTINGS_V2), the nox/invoke session switch and the perf
guard's CLI and check (PERF_GUARD_ENABLED), the API over HTTP (SUBMISSIONS_PAUSED) and the worker
(WORKERS_PAUSED).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from montage.cli import main
from montage.db import flagstore, jobs
from montage.db.database import Database, make_engine
from montage.ops import sessions
from montage.ops.checks import load_kind
from montage.ops.checks.base import CheckContext
from montage.ops.perf import cli as perf_cli
from montage.ops.perf import policy
from montage.settings import use_settings_v2
from montage.workers.executor import FfmpegTrimExecutor
from montage.workers.worker import Worker, WorkerConfig

from .conftest import Live, ServerThread

NAMES = ("USE_SETTINGS_V2", "PERF_GUARD_ENABLED", "SUBMISSIONS_PAUSED", "WORKERS_PAUSED")
# "file:N": the JSON integer N written by hand into the flags file, read at service start-up.
# "raw:V": V stored as-is in both stores (an older version's write, a hand edit of the table), so
# the readers' own rule is exercised, not just the normalisation on write.
OFF = ["0", "false", "no", "OFF", "file:0", "raw:0", 'raw:"no"', 'raw:"Off"', "raw:false"]
ON = ["1", "true", "YES", "on", "file:1", "raw:1", 'raw:"yes"', 'raw:"ON"', "raw:true"]
REPO = Path(__file__).resolve().parents[2]


def _set_all(live: Live, form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set every flag to ``form``: through the CLI (file + database), or by hand in the file + a restart."""
    flags_file = live.tmp_path / "flags.json"
    if form.startswith("file:"):
        flags_file.write_text(json.dumps(dict.fromkeys(NAMES, int(form[5:]))) + "\n", encoding="utf-8")
        from montage.service.app import create_app

        with ServerThread(create_app(live.loaded)) as base:  # start-up copies the file into the table
            assert httpx.get(f"{base}/v1/public/health", timeout=30).status_code == 200
        return
    if form.startswith("raw:"):
        raw = json.loads(form[4:])
        flags_file.write_text(json.dumps(dict.fromkeys(NAMES, raw)) + "\n", encoding="utf-8")

        async def put_raw() -> None:
            db = Database(make_engine(live.db_url))
            try:
                async with db.begin() as session:
                    for name in NAMES:
                        await flagstore.put_flag(session, name, raw)
            finally:
                await db.dispose()

        asyncio.run(put_raw())
        return
    for name, value in [(n, form) for n in NAMES]:
        monkeypatch.setenv("MONTAGE_DB__URL", live.db_url)
        monkeypatch.setenv("DATABASE_URL", live.db_url)  # after USE_SETTINGS_V2=false the legacy loader reads this
        monkeypatch.setenv("MONTAGE_OPS__FLAGS_FILE", str(flags_file))
        monkeypatch.setenv("MONTAGE_ENV_FILE", str(live.tmp_path / "none.env"))
        assert main(["flags", "set", name, value]) == 0


async def _worker_claims(live: Live, tmp_path: Path) -> bool:
    """Whether a worker picks up a queued job (a broken input: it fails fast, but it was claimed)."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    db = Database(make_engine(live.db_url))
    try:
        async with db.begin() as session:
            await jobs.create_job(session, input_path=str(bad), uploaded=False, duration_s=1, aspect="16:9")
        config = WorkerConfig(worker_id="t", data_dir=tmp_path / "data", lease_s=5, heartbeat_s=0.3, poll_s=0.1,
                              job_timeout_s=60, drain_grace_s=5, max_attempts=1, retention_s=3600)  # fmt: skip
        return await Worker(db, FfmpegTrimExecutor(threads=1), config).run(once=True) == 1
    finally:
        await db.dispose()


def _perf_check_disabled(tmp_path: Path) -> bool:
    kind = load_kind("perf_guard")
    evidence = tmp_path / "evidence"
    evidence.mkdir(parents=True)
    ctx = CheckContext(repo_root=REPO, bundle_dir=tmp_path, evidence_dir=evidence, phase_id=7, check_id="perf")
    judgement = kind.run(kind.Params(), ctx)
    return "disabled" in judgement.reason


@pytest.mark.usefixtures("clean_env")
@pytest.mark.filterwarnings("ignore:USE_SETTINGS_V2=false:DeprecationWarning")
@pytest.mark.parametrize("form", OFF + ON)
def test_every_form_means_the_same_to_every_component(
    live: Live, form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    on = form in ON
    _set_all(live, form, monkeypatch)
    flags_file = live.tmp_path / "flags.json"
    monkeypatch.setenv("MONTAGE_OPS__FLAGS_FILE", str(flags_file))

    # settings: USE_SETTINGS_V2 from the flags file selects the loader
    assert use_settings_v2(environ={"MONTAGE_OPS__FLAGS_FILE": str(flags_file)}) is on

    # nox -s perf / invoke perf.guard, the guard's CLI and the gate check: PERF_GUARD_ENABLED
    assert (sessions.disabled_by_flag("perf", tmp_path) is None) is on
    assert policy.guard_enabled(flags_file) is on
    if not on:  # enabled, these would measure for minutes; the switch above is what they consult
        assert perf_cli.main(["--repo", str(REPO), "guard"]) == 0
        assert "perf guard DISABLED" in capsys.readouterr().out
        assert _perf_check_disabled(tmp_path / "check")

    # the API over real HTTP: SUBMISSIONS_PAUSED
    resp = live.client.post("/v1/public/jobs", json={"path": "missing.mp4", "duration": 5})
    assert (resp.status_code == 503) is on, resp.text
    if on:
        assert resp.json()["error"]["code"] == "submissions_paused"

    # the worker: WORKERS_PAUSED
    assert asyncio.run(_worker_claims(live, tmp_path)) is not on


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("name", ["_", "__", "._", "...", "NOPE", "submissions_paused"])
def test_unknown_names_are_refused_by_the_api_and_the_stores_agree(live: Live, name: str) -> None:
    resp = live.client.put(f"/v1/admin/flags/{name}", json={"value": True}, headers=live.admin)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_flag" and "unknown flag" in resp.json()["error"]["message"]
    assert live.client.get("/v1/admin/flags", headers=live.admin).json()["flags"] == {}
    assert not (live.tmp_path / "flags.json").exists()


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("value", ["maybe", 2, -1, 0.5, "", None])
def test_bad_values_are_refused_naming_flag_and_value(live: Live, value: object) -> None:
    resp = live.client.put("/v1/admin/flags/WORKERS_PAUSED", json={"value": value}, headers=live.admin)
    assert resp.status_code == 422, resp.text
    message = resp.json()["error"]["message"]
    assert "WORKERS_PAUSED" in message and json.dumps(value) in message
    assert live.client.get("/v1/admin/flags", headers=live.admin).json()["flags"] == {}


@pytest.mark.usefixtures("clean_env")
def test_api_put_writes_both_stores(live: Live) -> None:
    resp = live.client.put("/v1/admin/flags/WORKERS_PAUSED", json={"value": "yes"}, headers=live.admin)
    assert resp.status_code == 200 and resp.json()["flags"] == {"WORKERS_PAUSED": True}
    assert json.loads((live.tmp_path / "flags.json").read_text()) == {"WORKERS_PAUSED": True}
