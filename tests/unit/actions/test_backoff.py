"""Retry rules: which statuses retry, how long to wait, what Retry-After means."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowguard.actions.backoff import Verdict, backoff_seconds, retry_after_seconds, verdict


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Verdict.DELIVERED),
        (202, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.FINAL),
        (302, Verdict.FINAL),
        (400, Verdict.FINAL),
        (401, Verdict.FINAL),
        (404, Verdict.FINAL),
        (408, Verdict.RETRY),
        (410, Verdict.FINAL),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (599, Verdict.RETRY),
    ],
)
def test_verdicts(status: int, expected: Verdict) -> None:
    assert verdict(status) is expected


@given(
    retry=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=60),
    cap=st.floats(min_value=0.001, max_value=600),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_stays_within_half_and_all_of_the_capped_delay(
    retry: int, base: float, cap: float, draw: float
) -> None:
    ceiling = min(cap, base * 2 ** min(retry - 1, 62))
    delay = backoff_seconds(retry, base_seconds=base, max_seconds=cap, draw=draw)
    assert ceiling / 2 <= delay <= ceiling <= cap


@given(
    retry=st.integers(min_value=1, max_value=60),
    base=st.floats(min_value=0.001, max_value=60),
    cap=st.floats(min_value=0.001, max_value=600),
)
def test_the_ceiling_never_shrinks_from_one_retry_to_the_next(
    retry: int, base: float, cap: float
) -> None:
    """With the same draw, a later retry never waits less: backoff, not random walk."""
    now = backoff_seconds(retry, base_seconds=base, max_seconds=cap, draw=0.5)
    later = backoff_seconds(retry + 1, base_seconds=base, max_seconds=cap, draw=0.5)
    assert later >= now


def test_backoff_counts_from_one() -> None:
    with pytest.raises(ValueError, match="retry counts from 1"):
        backoff_seconds(0, base_seconds=1, max_seconds=1, draw=0)


def test_retry_after_as_seconds_or_a_date() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds("7", now=now) == 7.0
    assert retry_after_seconds(" 0 ", now=now) == 0.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds(date, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert retry_after_seconds(past, now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2026 00:00:00"])
def test_unusable_retry_after_is_ignored(value: str | None) -> None:
    assert retry_after_seconds(value, now=0.0) is None
