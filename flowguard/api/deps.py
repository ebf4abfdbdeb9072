"""What the API's routers share: who may call (by role), the services, the error answers,
and how a query's time is read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from flowguard.api.auth import Principal, Role, require
from flowguard.api.errors import ErrorResponse
from flowguard.api.services import Services, services
from flowguard.errors import ApiProblem
from topics.record import from_iso

Viewer = Annotated[Principal, Depends(require(Role.viewer))]
Editor = Annotated[Principal, Depends(require(Role.editor))]
Admin = Annotated[Principal, Depends(require(Role.admin))]
Svc = Annotated[Services, Depends(services)]


def api_router(prefix: str, tag: str, *codes: int) -> APIRouter:
    """A router under ``prefix``, its operations tagged ``tag``, documenting the error answers
    it gives (``codes``) with the API's one error body."""
    responses: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in codes}
    return APIRouter(prefix=prefix, tags=[tag], responses=responses)


def query_time(value: str | None, field: str) -> float | None:
    """An ISO 8601 time given as the query parameter ``field``; a 422 naming it if it is not
    one."""
    if value is None:
        return None
    try:
        return from_iso(value)
    except ValueError:
        raise ApiProblem(
            422, "request_invalid", "the request is invalid", [(f"query.{field}", "not a time")]
        ) from None
