"""Retry planning: how long to wait before attempt N.

The exact args a retry sends again are recovered from Celery's reprs by
:mod:`flowguard.celery_wire.call_args` (the bridge needs them too).
"""

from __future__ import annotations

import math

HARD_CAP_SECONDS = 7 * 24 * 3600.0


def delay_for_attempt(
    attempt: int,
    *,
    delay_seconds: float,
    exponential_backoff: bool,
    backoff_multiplier: float,
    max_delay_seconds: float | None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    Fixed: ``delay_seconds``. Exponential: ``delay_seconds * multiplier**(attempt-1)``.
    Both are capped at ``max_delay_seconds`` when set, and always at a week (the
    longest delay a workflow may ask for), so a huge attempt number gives the cap
    rather than an overflow.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    _check_delay_inputs(delay_seconds, backoff_multiplier, max_delay_seconds)
    cap = (
        HARD_CAP_SECONDS if max_delay_seconds is None else min(max_delay_seconds, HARD_CAP_SECONDS)
    )
    if not exponential_backoff or delay_seconds == 0 or backoff_multiplier == 1:
        return float(min(delay_seconds, cap))
    return _capped_growth(float(delay_seconds), float(backoff_multiplier), attempt - 1, cap)


def _check_delay_inputs(delay: float, multiplier: float, cap: float | None) -> None:
    """Refuse inputs that would make delays negative, shrinking or NaN (a caller's bug)."""
    if not (math.isfinite(delay) and delay >= 0):
        raise ValueError(f"delay_seconds must be finite and >= 0, got {delay}")
    if not (math.isfinite(multiplier) and multiplier >= 1):
        raise ValueError(f"backoff_multiplier must be finite and >= 1, got {multiplier}")
    if cap is not None and not (math.isfinite(cap) and cap >= 0):
        raise ValueError(f"max_delay_seconds must be finite and >= 0, got {cap}")


def _capped_growth(base: float, multiplier: float, exponent: int, cap: float) -> float:
    """``min(cap, base * multiplier**exponent)`` without ever computing a huge power.

    The comparison is made in logs first; the power is computed only when the
    product is at most the cap, which for a tiny base can still overflow the
    power alone, so that case goes through logs too.
    """
    if base >= cap:
        return float(cap)
    growth = exponent * math.log(multiplier)
    if growth >= math.log(cap) - math.log(base):
        return float(cap)
    try:
        return float(min(cap, base * multiplier**exponent))
    except OverflowError:
        return float(min(cap, math.exp(math.log(base) + growth)))
