"""A recording HTTP server on 127.0.0.1 for tests: scripted statuses, delays, hangs, Retry-After.

The server runs aiohttp on its own event loop in a background thread, so sync
tests, async tests and other processes (a Faust worker under test) can all
talk to it. Every request is recorded before it is answered.

    with RecordingServer() as server:               # or the ``http_server`` fixture
        server.script("/hook", Reply(429, retry_after=1), Reply(200))
        ...send to server.url_for("/hook")...
        first, second = server.wait_for_requests(2, path="/hook", timeout_seconds=5)
        assert second.received_at - first.received_at >= 1
        assert first.json()["schema"] == "flowguard.webhook/1"

API: :class:`Reply` (what to answer), :class:`Recorded` (what arrived),
:class:`Streamed` (how much of a streamed answer the client took),
:class:`RecordingServer` (``url``, ``url_for``, ``script``, ``requests``,
``wait_for_requests``, ``wait_for_streamed``, ``release``, ``close``). A path
without a script answers ``200 ok``; a script's last reply repeats.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.helpers import wait_until

_START_SECONDS = 10.0


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``hang`` never answers until :meth:`RecordingServer.release`.

    ``echo`` answers with the request itself (line, headers, body) instead of ``body``:
    the worst case for code that records response excerpts. ``stream_bytes`` answers with
    that many bytes instead, written as the client reads them (see :class:`Streamed`).
    """

    status: int = 200
    body: bytes | str = b"ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    hang: bool = False
    retry_after: str | float | None = None
    echo: bool = False
    stream_bytes: int = 0


@dataclass(frozen=True)
class Streamed:
    """A streamed answer: bytes the server got to write, and whether it wrote them all.

    Writes wait while the client does not read (TCP flow control), so ``written`` is what
    the client read plus what the two sockets' buffers hold: a client that stops reading
    and closes early leaves ``complete`` false and ``written`` far below the size.
    """

    path: str
    size: int
    written: int
    complete: bool


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived. Header names are lower case; ``received_at`` is monotonic."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    received_at: float

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingServer:
    """See the module docstring. Start on construction; ``close()`` (or ``with``) stops it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recorded: list[Recorded] = []
        self._streamed: list[Streamed] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread.start()
        self._released = self._run(self._make_event())
        self._runner: web.AppRunner = self._run(self._start())

    def url_for(self, path: str = "/") -> str:
        return self.url + path

    def script(self, path: str, *replies: Reply) -> None:
        """Answer requests to ``path`` with ``replies`` in order; the last one repeats."""
        if not replies:
            raise ValueError("script() needs at least one Reply")
        with self._lock:
            self._scripts[path] = list(replies)

    def requests(self, path: str | None = None) -> list[Recorded]:
        """What arrived so far (to ``path`` only, if given), in arrival order."""
        with self._lock:
            return [r for r in self._recorded if path is None or r.path == path]

    def wait_for_requests(
        self, count: int, *, path: str | None = None, timeout_seconds: float = 10.0
    ) -> list[Recorded]:
        """Wait until at least ``count`` requests arrived (to ``path``); fail at the deadline."""
        return wait_until(
            lambda: got if len(got := self.requests(path)) >= count else None,
            timeout_seconds=timeout_seconds,
            what=f"{count} request(s) to {path or 'any path'} on {self.url}",
        )

    def wait_for_streamed(self, path: str, *, timeout_seconds: float = 10.0) -> Streamed:
        """The first streamed answer to ``path`` once it ended (all written, or client gone)."""

        def ended() -> Streamed | None:
            with self._lock:
                return next((s for s in self._streamed if s.path == path), None)

        return wait_until(ended, timeout_seconds=timeout_seconds, what=f"a stream to {path} ended")

    def release(self) -> None:
        """Let every hanging request answer (503) now and any later one at once."""
        self._loop.call_soon_threadsafe(self._released.set)

    def close(self) -> None:
        if not self._loop.is_running():
            return
        self.release()
        self._run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_START_SECONDS)
        self._loop.close()

    def __enter__(self) -> RecordingServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_START_SECONDS)

    async def _make_event(self) -> asyncio.Event:
        return asyncio.Event()

    async def _start(self) -> web.AppRunner:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        return runner

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            script = self._scripts.get(path)
            if not script:
                return Reply()
            return script.pop(0) if len(script) > 1 else script[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = Recorded(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            received_at=time.monotonic(),
        )
        with self._lock:
            self._recorded.append(recorded)
        reply = self._next_reply(request.path)
        if reply.hang:
            await self._released.wait()
            return web.Response(status=503, text="released")
        if reply.delay_seconds:
            await asyncio.sleep(reply.delay_seconds)
        headers = dict(reply.headers)
        if reply.retry_after is not None:
            headers["Retry-After"] = str(reply.retry_after)
        if reply.stream_bytes:
            return await self._stream(request, reply, headers)
        payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
        if reply.echo:
            payload = _echo(request, recorded)
        return web.Response(status=reply.status, body=payload, headers=headers)

    async def _stream(
        self, request: web.Request, reply: Reply, headers: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status, headers=headers)
        response.content_length = reply.stream_bytes
        written, complete = 0, False
        chunk = b"x" * _STREAM_CHUNK
        try:
            await response.prepare(request)
            while written < reply.stream_bytes:
                part = chunk[: reply.stream_bytes - written]
                await response.write(part)
                written += len(part)
            await response.write_eof()
            complete = True
        except ConnectionError:
            pass  # the client went away: that is what a stream is for
        finally:
            with self._lock:
                self._streamed.append(Streamed(request.path, reply.stream_bytes, written, complete))
        return response


_STREAM_CHUNK = 64 * 1024


def _echo(request: web.Request, recorded: Recorded) -> bytes:
    head = f"{request.method} {request.path_qs}\n" + "".join(
        f"{name}: {value}\n" for name, value in recorded.headers.items()
    )
    return head.encode() + b"\n" + recorded.body
