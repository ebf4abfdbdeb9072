"""``/healthz``, ``/readyz`` and ``/metrics`` of a worker or a bridge, on ``health_port``.

A small aiohttp server on the process's own event loop, so an answer at all means the loop
turns (``/healthz``). ``/readyz`` runs the process's checks, each a function that returns
``None`` when fine or the reason it is not: 200 ``{"ready": true}`` or 503 with the reasons.
A monitor task runs the checks every second too, so a process that stops making progress
says so in its log (once when it goes unready, with the reasons, and once when it is back)
even if nobody probes it, and ``flowguard_ready`` follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flowguard.metrics import READY, REGISTRY

log = logging.getLogger("flowguard.health")

#: A check: None when fine, else why not.
Check = Callable[[], str | None]


class Health:
    """The checks, the monitor that logs their changes, and the HTTP server."""

    def __init__(
        self, checks: dict[str, Check], *, every_seconds: float = 1.0,
        on_tick: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        self.checks = checks
        self.every_seconds = every_seconds
        self.on_tick = on_tick
        self.reasons: list[str] | None = None  # None: not judged yet
        self._runner: web.AppRunner | None = None
        self._monitor: asyncio.Task[None] | None = None

    def judge(self) -> list[str]:
        """The reasons the process is not ready (empty: ready)."""
        reasons = []
        for name, check in self.checks.items():
            try:
                reason = check()
            except Exception as exc:  # a check that breaks says so, never the whole endpoint
                log.exception("readiness check %s", name)
                reason = f"check failed: {type(exc).__name__}: {exc}"
            if reason is not None:
                reasons.append(f"{name}: {reason}")
        return reasons

    def observe(self) -> list[str]:
        """Judge, and log a change of readiness (the first judgement logs only if unready)."""
        reasons = self.judge()
        if reasons and reasons != self.reasons:
            log.warning("not ready: %s", "; ".join(reasons), extra={"reasons": reasons})
        elif not reasons and self.reasons:
            log.info("ready again")
        self.reasons = reasons
        READY.set(0 if reasons else 1)
        return reasons

    async def start(self, port: int | None, host: str = "0.0.0.0") -> None:
        """Start the monitor, and the server when a port is set."""
        self._monitor = asyncio.create_task(self._watch(), name="health monitor")
        if port is None:
            return
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        log.info("health and metrics on %s:%d (/healthz, /readyz, /metrics)", host, port)

    async def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self._runner is not None:
            await self._runner.cleanup()

    async def _watch(self) -> None:
        while True:
            if self.on_tick is not None:
                try:
                    self.on_tick()
                except Exception:  # figures for /metrics only: never stop the monitor
                    log.exception("health monitor")
            self.observe()
            await asyncio.sleep(self.every_seconds)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def _readyz(self, _: web.Request) -> web.Response:
        reasons = self.observe()
        return web.json_response(
            {"ready": not reasons, "reasons": reasons}, status=503 if reasons else 200
        )

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
