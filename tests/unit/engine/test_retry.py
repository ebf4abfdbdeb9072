"""Retry planning: backoff delays."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowguard.engine.retry import HARD_CAP_SECONDS, delay_for_attempt

# --- delays -------------------------------------------------------------------------------


def delay(
    attempt: int,
    *,
    delay_seconds: float = 10,
    exponential_backoff: bool = True,
    backoff_multiplier: float = 2,
    max_delay_seconds: float | None = 300,
) -> float:
    return delay_for_attempt(
        attempt,
        delay_seconds=delay_seconds,
        exponential_backoff=exponential_backoff,
        backoff_multiplier=backoff_multiplier,
        max_delay_seconds=max_delay_seconds,
    )


def test_the_pages_backoff_sequence() -> None:
    # delay_seconds: 10, backoff_multiplier: 2, max_delay_seconds: 300 -> 10s, 20s, 40s, 80s, 160s
    assert [delay(a) for a in range(1, 6)] == [10, 20, 40, 80, 160]
    assert delay(6) == 300, "320 is over the 5 minute cap"
    assert all(isinstance(delay(a), float) for a in range(1, 8))


def test_fixed_delay_is_the_same_for_every_attempt() -> None:
    assert [delay(a, delay_seconds=60, exponential_backoff=False) for a in (1, 2, 3, 10**9)] == [
        60,
        60,
        60,
        60,
    ]


def test_fixed_delay_honours_the_cap_and_zero_means_now() -> None:
    assert delay(1, delay_seconds=600, exponential_backoff=False, max_delay_seconds=300) == 300
    assert delay(5, delay_seconds=0) == 0
    assert delay(5, delay_seconds=7, backoff_multiplier=1, max_delay_seconds=None) == 7


def test_huge_attempts_give_the_cap_not_an_overflow() -> None:
    assert delay(10**18) == 300
    assert delay(10**18, max_delay_seconds=None) == HARD_CAP_SECONDS
    assert delay(5000, delay_seconds=1e-300, backoff_multiplier=1.5, max_delay_seconds=None) == (
        HARD_CAP_SECONDS
    )
    # a tiny base whose power alone would overflow a float, though the product fits
    tiny = delay(1030, delay_seconds=5e-324, backoff_multiplier=2, max_delay_seconds=None)
    assert 0 < tiny < HARD_CAP_SECONDS
    assert math.isclose(tiny, 2.0**-45, rel_tol=1e-9)  # 5e-324 is 2**-1074


def test_a_cap_of_zero_means_retry_at_once() -> None:
    assert delay(3, max_delay_seconds=0) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempt": 0}, "attempt must be >= 1"),
        ({"attempt": -3}, "attempt must be >= 1"),
        ({"delay_seconds": -1}, "delay_seconds must be finite and >= 0"),
        ({"delay_seconds": math.nan}, "delay_seconds must be finite and >= 0"),
        ({"delay_seconds": math.inf}, "delay_seconds must be finite and >= 0"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier must be finite and >= 1"),
        ({"backoff_multiplier": math.inf}, "backoff_multiplier must be finite and >= 1"),
        ({"max_delay_seconds": -1}, "max_delay_seconds must be finite and >= 0"),
        ({"max_delay_seconds": math.nan}, "max_delay_seconds must be finite and >= 0"),
    ],
)
def test_inputs_that_would_make_nonsense_delays_are_refused(
    kwargs: dict[str, Any], message: str
) -> None:
    attempt = kwargs.pop("attempt", 1)
    with pytest.raises(ValueError, match=message):
        delay(attempt, **kwargs)


delays = st.floats(min_value=0, max_value=HARD_CAP_SECONDS)
multipliers = st.floats(min_value=1, max_value=100)
caps = st.none() | st.floats(min_value=0, max_value=HARD_CAP_SECONDS)
attempts = st.integers(min_value=1, max_value=10**12)


@given(d=delays, m=multipliers, cap=caps, first=attempts, second=attempts)
def test_exponential_delays_grow_with_the_attempt_and_stay_under_the_cap(
    d: float, m: float, cap: float | None, first: int, second: int
) -> None:
    low, high = sorted((first, second))
    a = delay(low, delay_seconds=d, backoff_multiplier=m, max_delay_seconds=cap)
    b = delay(high, delay_seconds=d, backoff_multiplier=m, max_delay_seconds=cap)
    limit = HARD_CAP_SECONDS if cap is None else cap
    assert 0 <= a <= b <= limit
    assert math.isfinite(b)


@given(d=delays, m=multipliers, cap=caps, attempt=st.integers(min_value=1, max_value=60))
def test_exponential_delay_is_the_formula_until_the_cap(
    d: float, m: float, cap: float | None, attempt: int
) -> None:
    limit = HARD_CAP_SECONDS if cap is None else cap
    got = delay(attempt, delay_seconds=d, backoff_multiplier=m, max_delay_seconds=cap)
    assert math.isclose(got, min(limit, d * m ** (attempt - 1)), rel_tol=1e-9)


@given(d=delays, cap=caps, attempt=attempts, m=multipliers)
def test_fixed_delay_ignores_the_multiplier(
    d: float, cap: float | None, attempt: int, m: float
) -> None:
    limit = HARD_CAP_SECONDS if cap is None else cap
    got = delay(
        attempt,
        delay_seconds=d,
        exponential_backoff=False,
        backoff_multiplier=m,
        max_delay_seconds=cap,
    )
    assert got == min(d, limit)
