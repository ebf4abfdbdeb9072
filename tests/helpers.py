"""Waiting on conditions with deadlines: tests never sleep to synchronize."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: wait() is the poll interval, bounded by the deadline
    while True:
        value = probe()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        pause.wait(min(interval, remaining))
