"""What ``--since``/``--until`` accept, and the range they make."""

from __future__ import annotations

import pytest

from flowguard.topic_range import TimeRange, parse_duration, parse_time

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90),
        ("15m", NOW - 900),
        ("24h", NOW - 86_400),
        ("7d", NOW - 7 * 86_400),
        ("1.5h", NOW - 5400),
        (" 2h ", NOW - 7200),
        ("2027-01-15T08:00:00Z", NOW),
        ("2027-01-15T09:00:00+01:00", NOW),
        ("2027-01-15T08:00:00", NOW),  # no offset: UTC
        ("2027-01-15", NOW - 8 * 3600),
    ],
)
def test_durations_back_from_now_and_iso_times(text: str, expected: float) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "24", "h", "-2h", "2w", "", "2027-13-01"])
def test_anything_else_is_refused_saying_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a duration back from now .* or an ISO 8601"):
        parse_time(text, NOW)


def test_a_range_ends_after_it_starts() -> None:
    assert TimeRange(NOW, None).holds(NOW + 10**9)
    span = TimeRange(NOW - 60, NOW)
    assert span.holds(NOW - 60)
    assert not span.holds(NOW)
    with pytest.raises(ValueError, match="--until must be later than --since"):
        TimeRange(NOW, NOW)


def test_a_warm_up_is_a_duration() -> None:
    assert parse_duration("0s") == 0
    assert parse_duration("90m") == 5400
    with pytest.raises(ValueError, match=r"'an hour': expected a duration \(0s, 90s"):
        parse_duration("an hour")
