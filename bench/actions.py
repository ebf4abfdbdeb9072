"""Benchmark: webhook deliveries per second through ActionRunner against a bare httpx loop.

A local aiohttp server (its own process) answers every POST after 1 ms. The
baseline is the loop anyone would write first: one ``httpx.AsyncClient``, the
same pre-built request bodies and headers, the same number of concurrent
senders. The runner does everything it does in production on top: payload
building, the address guard, per-host lanes, delivery-once bookkeeping,
response excerpts and (``--sign``) an HMAC signature per request. Runs are
interleaved and each side keeps its best, as the VM is noisy.

    python bench/actions.py                       # 5,000 deliveries x 5 rounds, 32 senders
    python bench/actions.py --deliveries 1000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from flowguard.actions import ActionRunner, ActionSettings  # noqa: E402
from flowguard.actions.outbound import Context  # noqa: E402
from flowguard.actions.webhook import prepare  # noqa: E402
from flowguard.engine.decision import Notice  # noqa: E402
from tests.unit.actions.notices import notice  # noqa: E402

LATENCY_SECONDS = 0.001


class Rate(NamedTuple):
    per_second: float
    cpu_us_per_delivery: float


def serve(sock: socket.socket) -> None:
    """The endpoint: 1 ms of latency, then 200 ok (runs in its own process)."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(LATENCY_SECONDS)
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()

    asyncio.run(main())


async def _senders(
    count: int, items: list[Notice], send: Callable[[Notice], Awaitable[None]]
) -> None:
    queue = iter(items)

    async def sender() -> None:
        for item in queue:
            await send(item)

    await asyncio.gather(*(sender() for _ in range(count)))


async def _measure(
    senders: int, notices: list[Notice], send: Callable[[Notice], Awaitable[None]]
) -> Rate:
    wall, cpu = time.perf_counter(), time.process_time()
    await _senders(senders, notices, send)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Rate(len(notices) / wall, cpu / len(notices) * 1e6)


async def bare(url: str, notices: list[Notice], senders: int, sign: bool) -> Rate:
    """The baseline: the same requests, pre-built, through one plain client."""
    settings = ActionSettings(allow_hosts="127.0.0.1")
    requests = [prepare(n, Context(settings, False, time.time())) for n in notices]
    by_id = {n.action_id: r for n, r in zip(notices, requests, strict=True)}
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(limits=limits) as client:

        async def send(item: Notice) -> None:
            out = by_id[item.action_id]
            response = await client.post(url, content=out.body, headers=dict(out.headers))
            response.raise_for_status()

        return await _measure(senders, notices, send)


async def runner(url: str, notices: list[Notice], senders: int, sign: bool) -> Rate:
    """ActionRunner.deliver for each notice, every result checked."""
    settings = ActionSettings(
        allow_hosts="127.0.0.1",
        per_endpoint_concurrency=senders,
        per_host_concurrency=senders,
        queue_size=len(notices),
    )
    async with ActionRunner(settings) as actions:

        async def send(item: Notice) -> None:
            result = await actions.deliver(item)
            assert result.status == "succeeded", result

        return await _measure(senders, notices, send)


def _notices(url: str, count: int, sign: bool) -> list[Notice]:
    doc: dict[str, object] = {"type": "webhook", "url": url}
    if sign:
        doc["secret"] = "bench-signing-secret-0123456789"
    return [notice(doc) for _ in range(count)]


def wait_until_serving(url: str, timeout_seconds: float = 30.0) -> None:
    """The server process imports aiohttp first: measure only once it answers."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            httpx.post(url, content=b"{}", timeout=timeout_seconds).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--sign", action="store_true", help="webhooks with a signing secret")
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)  # connections wait in the backlog until the server process accepts them
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(sock,), daemon=True)
    server.start()
    try:
        wait_until_serving(url)
        best = {"bare": Rate(0.0, 0.0), "runner": Rate(0.0, 0.0)}
        paired: list[float] = []
        bare_rate = 0.0
        for round_ in range(args.rounds):
            for name, fn in (("bare", bare), ("runner", runner)):
                rate = asyncio.run(
                    fn(url, _notices(url, args.deliveries, args.sign), args.senders, args.sign)
                )
                best[name] = max(best[name], rate)
                if name == "bare":
                    bare_rate = rate.per_second
                else:  # the runner right after the bare loop of the same round
                    paired.append(rate.per_second / bare_rate)
                print(
                    f"round {round_ + 1} {name:>6}: {rate.per_second:8.0f} deliveries/s, "
                    f"{rate.cpu_us_per_delivery:6.0f} us CPU per delivery",
                    file=sys.stderr,
                )
    finally:
        server.terminate()
        server.join(timeout=10)
    ratio = best["runner"].per_second / best["bare"].per_second
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"python {platform.python_version()}, {args.deliveries} deliveries x {args.rounds} rounds, "
        f"{args.senders} senders, server latency {LATENCY_SECONDS * 1000:g} ms, "
        f"signed: {args.sign}, {os.cpu_count()} CPUs, load average {load}\n"
        f"bare httpx loop: {best['bare'].per_second:.0f} deliveries/s (best round), "
        f"{best['bare'].cpu_us_per_delivery:.0f} us client CPU per delivery\n"
        f"ActionRunner:    {best['runner'].per_second:.0f} deliveries/s (best round), "
        f"{best['runner'].cpu_us_per_delivery:.0f} us client CPU per delivery\n"
        f"ratio runner/bare: {ratio:.2f} best against best, "
        f"{statistics.median(paired):.2f} median of rounds (goal >= 0.8)"
    )


if __name__ == "__main__":
    main()
