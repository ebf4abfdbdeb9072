"""Bounded input: header and body limits checked before routing, parsing and auth.

A pure ASGI middleware, outermost in the app, so a request is measured before FastAPI
reads its body into memory or a dependency looks at its token. A ``Content-Length``
over the limit is refused without reading a byte of the body; a streamed (chunked) body
is counted chunk by chunk as it is received and refused the moment it passes the limit,
so at most one limit's worth is ever held. A request without a known token gets a much
smaller limit: nobody unauthenticated can make the API read megabytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from flowguard.api.auth import TokenAuth
from flowguard.api.errors import error_response
from flowguard.errors import AuthError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(Exception):
    """The body passed the limit while it was being received."""


class InputLimits:
    """Refuse oversized headers (431) and bodies (413) before the app sees the request."""

    def __init__(
        self,
        app: Asgi,
        *,
        auth: TokenAuth,
        max_body_bytes: int,
        max_unauthenticated_body_bytes: int,
        max_header_bytes: int,
    ) -> None:
        self.app = app
        self.auth = auth
        self.max_body_bytes = max_body_bytes
        self.max_unauthenticated_body_bytes = max_unauthenticated_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if sum(len(k) + len(v) + 4 for k, v in headers) > self.max_header_bytes:
            await self._refuse(
                scope, receive, send, 431, "headers_too_large",
                f"the request headers are larger than {self.max_header_bytes} bytes",
            )  # fmt: skip
            return
        limit = self._limit(headers)
        declared = _content_length(headers)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, 413, "too_large", _too_large(limit))
            return
        refused = False
        seen = 0

        async def counted() -> Message:
            # FastAPI turns an error raised while reading the body into its own 400, so the
            # 413 is sent from here, and whatever the app answers after it is dropped.
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    await self._refuse(scope, receive, send, 413, "too_large", _too_large(limit))
                    raise _TooLarge
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        # FastAPI's body reading catches it; elsewhere (a raw route) it stops here.
        with contextlib.suppress(_TooLarge):
            await self.app(scope, counted, unless_refused)

    def _limit(self, headers: list[tuple[bytes, bytes]]) -> int:
        authorization = next((v for k, v in headers if k == b"authorization"), None)
        try:
            self.auth.authenticate(authorization.decode("latin-1") if authorization else None)
        except AuthError:
            return min(self.max_body_bytes, self.max_unauthenticated_body_bytes)
        return self.max_body_bytes

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str
    ) -> None:
        response = error_response(status, code, message)
        # The rest of the body is never read: the connection is closed after the answer.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"
