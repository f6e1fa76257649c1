"""One error body for every failure: ``{"error": {"status", "code", "message"}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger("montage.service")


CLIENT_CLOSED = 499
"""Status recorded (never sent: nobody is listening) for a request whose client hung up mid-request."""


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """Raised by handlers; rendered as :class:`ErrorBody` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          408: "request_timeout", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
          422: "invalid_request", 503: "unavailable"}  # fmt: skip


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(status=status, code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entry documenting the error body for ``statuses``."""
    return {s: {"model": ErrorBody, "description": _CODES.get(s, "error").replace("_", " ")} for s in statuses}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from montage.db.errors import DatabaseUnavailable, describe

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(exc.status_code, _CODES.get(exc.status_code, "error"), str(exc.detail), exc.headers)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if any(err.get("type") == "json_invalid" for err in exc.errors()):  # not JSON at all: 400, as documented
            return error_response(
                400, "invalid_json", f"the request body is not valid JSON: {_validation_message(exc)}"
            )
        return error_response(422, "invalid_request", _validation_message(exc))

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable during %s %s: %s", request.method, request.url.path, describe(exc))
        return error_response(
            503,
            "database_unavailable",
            f"The jobs database is unavailable ({describe(exc)}); retry later.",
            {"Retry-After": "5"},
        )

    async def client_gone(request: Request, exc: Exception) -> JSONResponse:
        # The client hung up before its request was read: not our failure, so no traceback and not a
        # 5xx for the SLO; 499 (nginx's "client closed request") is what the metrics record.
        log.info("client closed the connection during %s %s", request.method, request.url.path)
        return error_response(CLIENT_CLOSED, "client_closed_request", "the client closed the connection")

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        from montage.service.imports import count_if_import_error

        count_if_import_error(exc)
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the service log")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(SQLAlchemyError, database_error)
    app.add_exception_handler(DatabaseUnavailable, database_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, unexpected)


class BodyLimitMiddleware:
    """Refuse request bodies over ``limit`` bytes while they stream in (chunked uploads included).

    Starlette spools a multipart upload to a temporary file before the handler sees it; counting in
    ``receive`` stops an oversize upload at the limit instead of after it filled the disk.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise ApiError(413, "payload_too_large", f"request body exceeds {self.limit // (1024 * 1024)} MB")
            return message

        await self.app(scope, limited, send)
