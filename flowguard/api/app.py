"""The FastAPI application: routers, the one error shape, auth, CORS (closed by default), UI.

``create_app`` builds an app from settings; its lifespan starts the store, the
producer, the action runner and the history projection, and stops them on the
way out. Tests and ``flowguard api`` both serve this same app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flowguard import __version__
from flowguard.api import (
    errors,
    executions,
    fleet,
    groups,
    rehearse,
    remediate,
    testing,
    ui,
    workflows,
)
from flowguard.api.auth import Principal, Role, require
from flowguard.api.limits import InputLimits
from flowguard.api.models import Principal as PrincipalOut
from flowguard.api.services import started, token_auth
from flowguard.api.settings import ApiSettings
from flowguard.metrics import REGISTRY
from flowguard.settings import Settings


def create_app(settings: Settings, api: ApiSettings) -> FastAPI:
    """The app for one deployment; a bad token setting fails here, before serving."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with started(settings, api) as found:
            app.state.services = found
            yield

    app = FastAPI(
        title="flowguard",
        version=__version__,
        description="Workflows, Test Workflow and execution history for Celery task failures.",
        lifespan=lifespan,
    )
    app.state.auth = token_auth(api)
    errors.install(app)
    if api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(api.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    # Last added is outermost: the limits run before CORS, routing, parsing and auth.
    app.add_middleware(
        InputLimits,
        auth=app.state.auth,
        max_body_bytes=api.max_body_bytes,
        max_unauthenticated_body_bytes=api.max_unauthenticated_body_bytes,
        max_header_bytes=api.max_header_bytes,
    )
    app.include_router(workflows.router)
    app.include_router(testing.router)
    app.include_router(executions.router)
    app.include_router(fleet.router)
    app.include_router(groups.router)
    app.include_router(remediate.router)
    app.include_router(rehearse.router)
    app.include_router(ui.router)
    app.mount("/ui/static", ui.static, name="static")

    @app.get("/api/me", response_model=PrincipalOut, tags=["auth"])
    async def me(who: Annotated[Principal, Depends(require(Role.viewer))]) -> PrincipalOut:
        """Who the token belongs to: the UI shows it and hides what the role cannot do."""
        return PrincipalOut(name=who.name, role=who.role.name)

    @app.get("/api/health", tags=["auth"])
    async def health() -> dict[str, str]:
        """Liveness, without a token."""
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of this process, without a token (as a scraper reads them)."""
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
