"""``/v1/public``: health, readiness, job submission, status, result and plan."""

from __future__ import annotations

import errno
import json
import re
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from montage.db import flagstore, jobs
from montage.service.context import Context, Session, public_access
from montage.service.errors import ApiError, responses
from montage.service.schemas import JobFromPath, JobOut, Ready, job_out

router = APIRouter(prefix="/v1/public", tags=["public"])
Access = Annotated[str | None, Depends(public_access)]
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,5}$")
_CHUNK = 1024 * 1024

_UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file", "duration"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the video"},
        "duration": {"type": "number", "minimum": 1, "maximum": 3600},
        "aspect": {"type": "string", "enum": ["16:9", "9:16"], "default": "16:9"},
    },
}


@router.get("/health", summary="the process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", response_model=Ready, summary="database reachable and migrations current",
            responses={503: {"model": Ready, "description": "not ready"}})  # fmt: skip
async def ready(ctx: Context, response: Response) -> Ready:
    from sqlalchemy.exc import SQLAlchemyError

    from montage.db.errors import describe
    from montage.db.migrate import current_revision

    head = ctx.head_revision
    try:
        revision = await current_revision(ctx.db.primary)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        response.status_code = 503
        return Ready(status="not_ready", database="down", revision=None, head=head, detail=describe(exc))
    if revision != head:
        response.status_code = 503
        detail = f"database at revision {revision or 'base'}, code expects {head}; run `montage db upgrade`"
        return Ready(status="not_ready", database="up", revision=revision, head=head, detail=detail)
    return Ready(status="ready", database="up", revision=revision, head=head, detail="ok")


def _inside_media_root(ctx: Context, raw: str) -> Path:
    """The file ``raw`` names inside the media root; 400 for anything else.

    Messages name the path as the client sent it, never the media root's absolute location.
    Unusable names (a component over NAME_MAX, a symlink loop) are the client's mistake: 400,
    classified here so they never reach the session dependency as a "database" OSError.
    """
    root = Path(ctx.settings.service.media_root).resolve()
    if "\x00" in raw:
        raise ApiError(400, "bad_path", "path contains a NUL byte")
    candidate = Path(raw)
    try:
        resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
        if not resolved.is_relative_to(root):
            raise ApiError(400, "path_outside_media_root", f"path {raw!r} is outside the media root")
        is_file = resolved.is_file()
    except (OSError, RuntimeError) as exc:  # RuntimeError: Path.resolve's "symlink loop" before Python 3.13
        errno_name = errno.errorcode.get(getattr(exc, "errno", None) or 0, "")
        reason = {"ENAMETOOLONG": "a name in it is too long", "ELOOP": "it is a symlink loop"}.get(
            errno_name, "it is a symlink loop" if isinstance(exc, RuntimeError) else "it cannot be read"
        )
        raise ApiError(400, "bad_path", f"path {raw!r} cannot be used: {reason}") from None
    if not is_file:
        raise ApiError(400, "no_such_file", f"path {raw!r} is not a file inside the media root")
    return resolved


async def _save_upload(ctx: Context, upload: UploadFile, job_id: str) -> Path:
    limit = ctx.settings.service.upload_max_mb * 1024 * 1024
    suffix = Path(upload.filename or "").suffix
    dest_dir = ctx.uploads_dir / job_id
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"input{suffix if _SUFFIX.match(suffix) else '.bin'}"
    tmp = dest.with_suffix(dest.suffix + ".part")
    written = 0
    try:
        with tmp.open("wb") as out:
            while chunk := await upload.read(_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise ApiError(413, "payload_too_large", f"upload exceeds {ctx.settings.service.upload_max_mb} MB")
                out.write(chunk)
        if written == 0:
            raise ApiError(400, "empty_upload", "the uploaded file is empty")
        tmp.replace(dest)
    except OSError as exc:  # disk full, permissions: a storage problem, not a database one
        tmp.unlink(missing_ok=True)
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise ApiError(503, "storage_unavailable", f"could not store the upload ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise
    return dest


def _form_value(form: Any, name: str, default: str | None = None) -> Any:
    value = form.get(name, default)
    if isinstance(value, UploadFile):
        raise RequestValidationError([{"loc": ("body", name), "msg": "must be a form field, not a file",
                                       "type": "value_error"}])  # fmt: skip
    return value


async def _flag_on(session: Session, name: str) -> bool:
    from montage.core.flags import FlagError, enabled

    try:
        return enabled(await flagstore.get_flags(session), name, "database flags table")
    except FlagError as exc:  # only a hand edit of the table gets here: the operator's problem, not the client's
        raise ApiError(503, "flag_invalid", str(exc)) from None


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    summary="submit a video (multipart upload) or a file inside the media root (JSON)",
    responses=responses(400, 401, 403, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
                "application/json": {"schema": JobFromPath.model_json_schema()},
            },
        }
    },
)
async def submit_job(request: Request, ctx: Context, session: Session, _: Access, response: Response) -> JobOut:
    if await _flag_on(session, "SUBMISSIONS_PAUSED"):
        raise ApiError(503, "submissions_paused", "submissions are paused (flag SUBMISSIONS_PAUSED)")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    job_id = jobs.new_job_id()
    if content_type == "application/json":
        try:
            body = JobFromPath.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
        path, uploaded, duration, aspect = _inside_media_root(ctx, body.path), False, body.duration, body.aspect
    elif content_type == "multipart/form-data":
        limit = ctx.settings.service.upload_max_mb * 1024 * 1024
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + 64 * 1024:
            raise ApiError(413, "payload_too_large", f"upload exceeds {ctx.settings.service.upload_max_mb} MB")
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            try:
                fields = JobFromPath.model_validate(
                    {
                        "path": "upload",
                        "duration": _form_value(form, "duration"),
                        "aspect": _form_value(form, "aspect", "16:9"),
                    }  # fmt: skip
                )
            except ValidationError as exc:
                raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
            if not isinstance(upload, UploadFile):
                raise RequestValidationError([{"loc": ("body", "file"), "msg": "a file part named 'file' is required",
                                               "type": "missing"}])  # fmt: skip
            path = await _save_upload(ctx, upload, job_id)
        uploaded, duration, aspect = True, fields.duration, fields.aspect
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data (file upload) or application/json")
    pixels, estimate = await _admissible(ctx, session, path, duration, uploaded)
    job = await jobs.create_job(session, job_id=job_id, input_path=str(path), uploaded=uploaded, duration_s=duration,
                                aspect=aspect, input_pixels=pixels, estimate_mb=estimate)  # fmt: skip
    await session.commit()  # before the response: the client may ask for the job at once
    if ctx.dispatcher is not None:  # celery engine: after the commit, so a task always finds its row
        await ctx.dispatcher.dispatch(ctx.db, job.id)  # failure is logged; the relay publishes it later
    response.headers["Location"] = f"/v1/public/jobs/{job.id}"
    return job_out(job)


async def _admissible(
    ctx: Context, session: Session, path: Path, duration: float, uploaded: bool
) -> tuple[int | None, int]:
    """The job's memory estimate; 422 (upload removed) when no live worker could ever admit it."""
    from montage.runtime import admission

    found = await admission.submission_estimate(session, ctx.settings.memory, path, duration)
    if found.refusal is not None:
        if uploaded:
            shutil.rmtree(path.parent, ignore_errors=True)
        raise ApiError(422, "job_exceeds_memory_budget", found.refusal)
    return found.pixels, found.estimate_mb


async def _job(session: Session, job_id: str) -> Any:
    job = await jobs.get_job(session, job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id!r}")
    return job


@router.get("/jobs/{job_id}", response_model=JobOut, responses=responses(401, 403, 404, 503))
async def get_job(job_id: str, session: Session, _: Access) -> JobOut:
    return job_out(await _job(session, job_id))


def _finished_file(job: Any, path: str | None, what: str) -> Path:
    if job.purged_at is not None:
        raise ApiError(410, "gone", f"job {job.id}'s files were removed after the retention period")
    if job.state != "succeeded" or not path:
        raise ApiError(409, "not_ready", f"job {job.id} is {job.state}; its {what} exists once it has succeeded")
    file = Path(path)
    if not file.is_file():
        raise ApiError(410, "gone", f"job {job.id}'s {what} is no longer on disk")
    return file


@router.get(
    "/jobs/{job_id}/result",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
            "description": "the montage",
        },
        **responses(401, 403, 404, 409, 410, 503),
    },  # fmt: skip
)
async def get_result(job_id: str, session: Session, _: Access) -> FileResponse:
    job = await _job(session, job_id)
    file = _finished_file(job, job.result_path, "result")
    return FileResponse(file, media_type="video/mp4", filename=f"montage-{job.id}.mp4")


@router.get("/jobs/{job_id}/plan", response_model=dict[str, Any], responses=responses(401, 403, 404, 409, 410, 503))
async def get_plan(job_id: str, session: Session, _: Access) -> dict[str, Any]:
    job = await _job(session, job_id)
    file = _finished_file(job, job.plan_path, "plan")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ApiError(410, "gone", f"job {job.id}'s plan is no longer readable ({exc})") from None
    return data if isinstance(data, dict) else {"plan": data}
