"""The one HTTP client of the runners, with the address check wired into every connect.

httpx resolves and connects inside httpcore; the only place that sees the
address a name resolved to, and can connect to exactly that address, is the
network backend. :class:`GuardedBackend` resolves the host itself, refuses
internal addresses (see :mod:`flowguard.actions.safety`) and connects to a
vetted address, so a DNS answer that changes between check and connect
(rebinding) cannot slip through. TLS still verifies the certificate against
the host name: httpcore passes the origin's name as SNI, not the address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable

import httpcore
import httpx
from httpcore._backends.base import SOCKET_OPTION

from flowguard.actions.safety import AllowList, check_address
from flowguard.actions.settings import ActionSettings
from flowguard.errors import Refused


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, vet every address, then connect to a vetted one."""

    def __init__(self, allow: AllowList) -> None:
        self._allow = allow
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        for address in addresses:
            check_address(host, address, self._allow)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def _resolve(
        self, host: str, port: int, timeout_seconds: float | None
    ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_seconds):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        seen: dict[str, None] = {str(info[4][0]): None for info in infos}
        if not seen:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        return [ipaddress.ip_address(a.split("%")[0]) for a in seen]

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise Refused("unix sockets are not a destination for actions")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool built on :class:`GuardedBackend`.

    httpx does not take a network backend, so the pool it built is swapped for
    one that has it (``_pool`` is the attribute httpx 0.28 sends through; the
    integration tests fail loudly if a new httpx stops doing so).
    """

    def __init__(self, settings: ActionSettings) -> None:
        # One SSL context for both pools (loading the CA bundle costs ~0.1 s each time).
        ssl_context = httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,
            max_keepalive_connections=settings.max_keepalive_connections,
            keepalive_expiry=30.0,
            network_backend=GuardedBackend(settings.allow_hosts),
        )


def make_client(settings: ActionSettings) -> httpx.AsyncClient:
    """The shared client: pooled, guarded, no redirects, no proxies from the environment.

    The pool itself is unbounded on purpose: per-host limits live in the runner,
    so a host that hangs holds only its own connections, never the others'.
    """
    _install_url_redaction()
    return httpx.AsyncClient(
        transport=_GuardedTransport(settings),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(
            settings.request_timeout_seconds, connect=settings.connect_timeout_seconds
        ),
        headers={"User-Agent": "flowguard-actions/1"},
    )


class _RedactUrls(logging.Filter):
    """httpx logs every request's full URL at INFO; a webhook URL's path is its secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(_origin(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}/***"


def _install_url_redaction() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactUrls) for f in logger.filters):
        logger.addFilter(_RedactUrls())
