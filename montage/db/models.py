"""SQLAlchemy 2 models of the jobs database: jobs, job events, API keys and flags.

The metadata carries a constraint naming convention so that Alembic migrations (and SQLite batch
mode, which must drop constraints by name) produce the same names on every backend.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Float, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class Job(Base):
    """One montage request and its lease-based execution state."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    input_path: Mapped[str] = mapped_column(Text)
    uploaded: Mapped[bool] = mapped_column(default=False)
    duration_s: Mapped[float] = mapped_column(Float)
    aspect: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_token: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    worker_id: Mapped[str | None] = mapped_column(String(128), default=None)
    result_path: Mapped[str | None] = mapped_column(Text, default=None)
    plan_path: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    # Memory admission (montage/runtime/admission.py, migration 0003): the estimate made at
    # submission, what the claim reserved on which machine, and why a queued job is waiting.
    input_pixels: Mapped[int | None] = mapped_column(Integer, default=None)
    estimate_mb: Mapped[int | None] = mapped_column(Integer, default=None)
    reserved_mb: Mapped[int | None] = mapped_column(Integer, default=None)
    machine: Mapped[str | None] = mapped_column(String(255), default=None)
    status_text: Mapped[str | None] = mapped_column(Text, default=None)

    events: Mapped[list[JobEvent]] = relationship(back_populates="job", cascade="all, delete-orphan")

    __table_args__ = (
        Index("ix_jobs_state_created_at", "state", "created_at"),
        # Finding expired leases scans running jobs by expiry (migration 0002).
        Index("ix_jobs_state_lease_expires_at", "state", "lease_expires_at"),
        # Reservations of the jobs running on one machine (migration 0003).
        Index("ix_jobs_state_machine", "state", "machine"),
    )


class JobEvent(Base):
    """An append-only log of what happened to a job (claimed, heartbeat lost, finished, ...)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    job: Mapped[Job] = relationship(back_populates="events")


class WorkerBudget(Base):
    """A worker's memory budget (limit minus reserve), recorded when it registers and at every claim."""

    __tablename__ = "worker_budgets"

    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    machine: Mapped[str] = mapped_column(String(255), index=True)
    limit_mb: Mapped[int] = mapped_column(Integer)
    reserve_mb: Mapped[int] = mapped_column(Integer)
    budget_mb: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime())


class MemoryPeak(Base):
    """The measured peak of one finished job (its cgroup's counters) and the features it is keyed by."""

    __tablename__ = "memory_peaks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32))
    machine: Mapped[str] = mapped_column(String(255))
    pixels_class: Mapped[int] = mapped_column(Integer)  # 0 when the input's resolution is unknown
    duration_class: Mapped[int] = mapped_column(Integer)
    segments: Mapped[int | None] = mapped_column(Integer, default=None)
    peak_mb: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_memory_peaks_classes", "pixels_class", "duration_class", "segments"),)


class ApiKey(Base):
    """An admin API key: only the SHA-256 of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class Flag(Base):
    """A runtime flag (value is a JSON scalar), read by the service on every request and job."""

    __tablename__ = "flags"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
