"""The celery engine's pure parts, without a broker: configuration, secrets, the relay's outbox scan."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from montage.db import jobs
from montage.db.database import Database, make_engine
from montage.db.models import Job, JobEvent, utcnow
from montage.settings import Settings, load_settings, masked_view
from montage.workers import celery_engine as ce

URL = "redis://:pa55word@broker.example:6380/2"


def _settings(**celery: object) -> Settings:
    return Settings(service={"engine": "celery", "job_timeout_s": 900}, celery={"broker_url": URL, **celery})


def test_reliability_settings_follow_the_job_timeout() -> None:
    conf = ce.celery_config(_settings())
    assert conf["task_acks_late"] is True and conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_time_limit"] > conf["task_soft_time_limit"] > 900
    # Longer than any job (no second worker for a slow render); the lease finds dead workers instead.
    assert conf["broker_transport_options"]["visibility_timeout"] == 1500
    assert conf["worker_max_memory_per_child"] == 2048 * 1024
    assert ce.celery_config(_settings(visibility_timeout_s=42))["broker_transport_options"]["visibility_timeout"] == 42


def test_broker_url_is_a_masked_secret() -> None:
    assert ce.shown_url(URL) == "redis://:****@broker.example:6380/2"
    assert ce.shown_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    loaded = load_settings(
        environ={"USE_SETTINGS_V2": "true", "MONTAGE_ENV_FILE": "/none", "MONTAGE_CELERY__BROKER_URL": URL}
    )
    shown = dict((name, value) for name, value, _ in masked_view(loaded))
    assert shown["celery.broker_url"] == "**********"
    assert "pa55word" not in repr(loaded.settings)


def test_celery_engine_without_a_broker_url_says_which_setting() -> None:
    from montage.errors import ConfigError

    with pytest.raises(ConfigError, match="celery.broker_url is not set"):
        ce.broker_url(Settings(service={"engine": "celery"}))


def test_help_does_not_import_celery() -> None:
    code = (
        "import sys, montage.cli, montage.commands.worker, montage.commands.serve, montage.settings; "
        "print(sorted(m for m in ('celery', 'kombu', 'redis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_relay_scans_the_outbox(sqlite_db_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        db = Database(make_engine(sqlite_db_url))
        try:
            async with db.begin() as session:
                made = [(await jobs.create_job(session, input_path="x", uploaded=False, duration_s=1,
                                               aspect="16:9")).id for _ in range(5)]  # fmt: skip
            never, fresh, old, given_back, recent = made
            past = utcnow() - timedelta(seconds=100)
            async with db.begin() as session:
                await session.execute(update(Job).where(Job.id != fresh).values(created_at=past))
                session.add(JobEvent(job_id=old, at=past, kind=ce.DISPATCHED, detail={"task_id": f"{old}-1"}))
                session.add(JobEvent(job_id=given_back, at=past, kind=ce.DISPATCHED, detail={"task_id": "g-1"}))
                session.add(JobEvent(job_id=given_back, at=utcnow(), kind="requeued", detail=None))
                session.add(JobEvent(job_id=recent, at=utcnow(), kind=ce.DISPATCHED, detail={"task_id": "r-1"}))
            due = await ce.due_for_relay(db, relay_after_s=60, grace_s=10)
            assert sorted(due) == sorted([never, old, given_back])  # not the fresh submission nor the recent one
            # Re-published ones back off: after a 2nd dispatch 100 s ago, 60 s * 2 = 120 s have not passed.
            async with db.begin() as session:
                session.add(JobEvent(job_id=old, at=past, kind=ce.RELAYED, detail={"task_id": f"{old}-2"}))
            assert old not in await ce.due_for_relay(db, relay_after_s=60, grace_s=10)
            counts = await ce.event_counts(db)
            assert counts[ce.DISPATCHED] == 3 and counts[ce.RELAYED] == 1
        finally:
            await db.dispose()

    asyncio.run(go())
