"""Waiting on conditions with deadlines: tests never sleep to synchronize.

A poll interval is not synchronization: the condition decides, the deadline bounds the wait,
and a timeout names what never happened.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar, overload

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout_seconds: float,
    what: str,
    interval_seconds: float = 0.05,
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_seconds
    # Never set: wait() is the poll interval, bounded by the deadline.
    pause = threading.Event()
    while True:
        value = probe()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout_seconds:g}s waiting for {what}")
        pause.wait(min(interval_seconds, remaining))


@overload
async def until(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout_seconds: float,
    what: str,
    interval_seconds: float = ...,
) -> T: ...


@overload
async def until(
    probe: Callable[[], T], *, timeout_seconds: float, what: str, interval_seconds: float = ...
) -> T: ...


async def until(
    probe: Callable[[], Any],
    *,
    timeout_seconds: float,
    what: str,
    interval_seconds: float = 0.05,
) -> Any:
    """``await until(probe, ...)``: :func:`wait_until` for coroutines; ``probe`` may be async.

    A probe that is itself slow is cut off at the deadline too.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while True:
        remaining = deadline - loop.time()
        try:
            value = await asyncio.wait_for(_call(probe), max(remaining, 0.001))
        except TimeoutError:
            pass  # the probe itself ran out of time: the deadline check below says so
        else:
            if value:
                return value
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout_seconds:g}s waiting for {what}")
        await asyncio.sleep(min(interval_seconds, remaining))


async def _call(probe: Callable[[], Any]) -> Any:
    result = probe()
    if inspect.isawaitable(result):
        return await result
    return result


@asynccontextmanager
async def running(work: Coroutine[Any, Any, Any]) -> AsyncIterator[asyncio.Task[Any]]:
    """``async with running(coro) as task:`` the coroutine runs as a task for the block's length,
    and is cancelled and awaited on the way out (an error it ended with is the block's to check).
    """
    task = asyncio.create_task(work)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
