"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Aspect = Literal["16:9", "9:16"]
StateName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
# NaN and infinities are not JSON: stored, they would be read back as null (or break other readers).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
FlagScalar = str | int | FiniteFloat | bool | None


def _not_a_bool(value: Any) -> Any:
    # bool is an int to Python, so pydantic's lax float would take `true` as 1 s.
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds, not a boolean")
    return value


Seconds = Annotated[FiniteFloat, BeforeValidator(_not_a_bool)]
DURATION = Field(ge=1.0, le=3600.0, description="target montage length in seconds")


class JobFromPath(BaseModel):
    """Submit a file that already sits inside the configured media root."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096, description="path relative to (or inside) the media root")
    duration: Seconds = DURATION
    aspect: Aspect = "16:9"


class JobLinks(BaseModel):
    self: str
    result: str
    plan: str


class JobOut(BaseModel):
    id: str
    state: StateName
    duration: float
    aspect: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    status_text: str | None = Field(
        None, description='why a queued job is not running yet, e.g. "waiting for memory: needs N MB, M MB free"'
    )
    links: JobLinks


class JobList(BaseModel):
    jobs: list[JobOut]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready", "not_ready"]
    database: Literal["up", "down"]
    revision: str | None
    head: str | None
    detail: str


class FlagUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: FlagScalar


class Flags(BaseModel):
    flags: dict[str, FlagScalar]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)


class KeyCreated(BaseModel):
    id: str
    name: str
    key: str = Field(description="the API key; shown only in this response")
    created_at: datetime


class ConfigEntry(BaseModel):
    value: str
    origin: str


class ConfigOut(BaseModel):
    source: str
    settings: dict[str, ConfigEntry]


class DbStats(BaseModel):
    backend: str
    replica: bool
    read_fraction: float
    reads: dict[str, int]
    writes: int
    replica_fallbacks: int


class MemoryStats(BaseModel):
    limit_mb: float | None = Field(description="the binding memory limit (cgroup, settings override or host)")
    working_set_mb: float | None
    available_mb: float | None
    source: str = Field(description="where the figures came from, or why they could not be read")
    job_cgroups: bool = Field(description="whether per-job memory cgroups can be created here")
    job_cgroups_reason: str


class EngineWorker(BaseModel):
    id: str
    host: str
    pid: int
    version: str
    version_matches: bool  # False: this worker runs other code than the API
    concurrency: int = 1
    metrics_port: int | None = None


class EngineStats(BaseModel):
    """service.engine = celery: the broker's queue and the outbox counters (from job events)."""

    engine: str
    broker_up: bool
    broker_error: str | None = None
    queue_depth: int | None = None
    dispatched: int
    relayed: int
    redelivered: int
    publish_failed: int
    api_version: str
    workers: list[EngineWorker] = []


class WaitingJob(BaseModel):
    id: str
    status_text: str


class WorkerBudgetOut(BaseModel):
    worker_id: str
    machine: str
    limit_mb: int
    reserve_mb: int
    budget_mb: int
    source: str
    seen_at: datetime
    live: bool


class AdmissionStats(BaseModel):
    formula: str
    waiting: list[WaitingJob] = Field(
        description="queued jobs waiting for memory, oldest first (first come, first served)"
    )
    reserved_mb: dict[str, int] = Field(description="MB reserved by running jobs, per machine")
    workers: list[WorkerBudgetOut]


class Stats(BaseModel):
    jobs: dict[str, int]
    db: DbStats
    memory: MemoryStats | None = None
    engine: EngineStats | None = None
    admission: AdmissionStats | None = None


def job_out(job: Any) -> JobOut:
    base = f"/v1/public/jobs/{job.id}"
    return JobOut(
        id=job.id,
        state=job.state,
        duration=job.duration_s,
        aspect=job.aspect,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
        status_text=job.status_text,
        links=JobLinks(self=base, result=f"{base}/result", plan=f"{base}/plan"),
    )
