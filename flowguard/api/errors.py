"""One error shape for every failure, so clients branch on ``code`` and show ``problems``.

``{"error": {"code": ..., "message": ..., "problems": [{"field": ..., "reason": ...}]}}``.
Workflow problems carry the same field paths and reasons as ``flowguard lint``; request
problems name the field path in the request. Input values are never echoed: they may be
secrets.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowguard.errors import (
    ApiProblem,
    AuthError,
    KafkaUnavailable,
    VersionConflict,
    WorkflowInvalid,
)

log = logging.getLogger(__name__)


class Problem(BaseModel):
    field: str
    reason: str


class ErrorBody(BaseModel):
    code: str
    message: str
    problems: list[Problem] = []


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer has this body."""

    error: ErrorBody


def not_found(what: str) -> ApiProblem:
    return ApiProblem(404, "not_found", what)


def error_response(
    status: int, code: str, message: str, problems: list[tuple[str, str]] | None = None
) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorBody(
            code=code,
            message=message,
            problems=[Problem(field=f, reason=r) for f, r in problems or []],
        )
    )
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _request_field(loc: tuple[int | str, ...]) -> str:
    # FastAPI prefixes the part of the request: body.definition.trigger, query.limit.
    return ".".join(str(p) for p in loc) or "(request)"


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        (_request_field(tuple(e["loc"])), str(e["msg"]).removeprefix("Value error, "))
        for e in exc.errors()
    ]
    return error_response(422, "request_invalid", "the request is invalid", problems)


async def _on_workflow_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WorkflowInvalid)
    return error_response(422, "workflow_invalid", "the workflow is invalid", exc.problems)


async def _on_kafka_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Kafka down or slow is the deployment's state, not a bug: say so, and that a retry helps.
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "kafka_unavailable", str(exc))


async def _on_version_conflict(request: Request, exc: Exception) -> JSONResponse:
    return error_response(409, "version_conflict", str(exc))


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return error_response(exc.status, exc.code, exc.message, exc.problems)


async def _on_auth(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    code = "unauthenticated" if exc.status == 401 else "forbidden"
    return error_response(exc.status, code, exc.message)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), exc.detail)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", "internal error (logged on the server)")


def install(app: FastAPI) -> None:
    """Route every error the API can raise to the one shape."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(WorkflowInvalid, _on_workflow_invalid)
    app.add_exception_handler(ApiProblem, _on_problem)
    app.add_exception_handler(KafkaUnavailable, _on_kafka_unavailable)
    app.add_exception_handler(VersionConflict, _on_version_conflict)
    app.add_exception_handler(AuthError, _on_auth)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
