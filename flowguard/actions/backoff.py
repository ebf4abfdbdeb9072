"""When to try again: pure functions over a status, a header and a random draw.

Kept apart from the runner so the rules can be tested exhaustively (and with
hypothesis) without a server or a clock.
"""

from __future__ import annotations

import email.utils
import math
from enum import Enum


class Verdict(Enum):
    """What one HTTP status means for the delivery."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FINAL = "final"


def verdict(status: int) -> Verdict:
    """2xx delivered; 408, 429 and 5xx worth another try; any other status is final.

    3xx is final too: redirects are never followed (a redirected POST either
    loses its body or carries the signed payload and custom headers elsewhere).
    """
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in (408, 429) or 500 <= status < 600:
        return Verdict.RETRY
    return Verdict.FINAL


def backoff_seconds(retry: int, *, base_seconds: float, max_seconds: float, draw: float) -> float:
    """Delay before retry number ``retry`` (1-based): capped exponential with equal jitter.

    Half of the capped delay is fixed and half random (``draw`` in [0, 1)), so
    retries never bunch up at zero and never exceed ``max_seconds``.
    """
    if retry < 1:
        raise ValueError(f"retry counts from 1, got {retry}")
    exponent = min(retry - 1, 62)  # 2**62 * base is far past any cap; avoids float overflow
    ceiling = min(max_seconds, base_seconds * math.ldexp(1.0, exponent))
    return ceiling / 2 + ceiling / 2 * min(max(draw, 0.0), 1.0)


def retry_after_seconds(value: str | None, *, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), or ``None``.

    An unparseable or negative value is ignored (the caller's own backoff applies).
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
