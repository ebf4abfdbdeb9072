"""Retry planning: backoff delays and recovering the exact args from Celery's reprs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowguard.engine.retry import HARD_CAP_SECONDS, delay_for_attempt, parse_call_args
from flowguard.errors import ArgsUnrecoverable


def delays(n: int, **kw: float | bool | None) -> list[float]:
    return [delay_for_attempt(a, **kw) for a in range(1, n + 1)]  # type: ignore[arg-type]


def test_the_pages_backoff_sequence() -> None:
    seq = delays(
        6, delay_seconds=10, exponential_backoff=True, backoff_multiplier=2, max_delay_seconds=300
    )
    assert seq == [10, 20, 40, 80, 160, 300]


def test_fixed_delay() -> None:
    assert delays(
        3, delay_seconds=60, exponential_backoff=False, backoff_multiplier=2, max_delay_seconds=None
    ) == [60, 60, 60]


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError, match="attempt"):
        delay_for_attempt(
            0,
            delay_seconds=1,
            exponential_backoff=False,
            backoff_multiplier=2,
            max_delay_seconds=None,
        )


@given(
    delay=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    multiplier=st.floats(min_value=1, max_value=100, allow_nan=False),
    cap=st.none() | st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
    attempts=st.integers(min_value=1, max_value=1000),
)
def test_backoff_is_monotonic_capped_and_never_overflows(
    delay: float, multiplier: float, cap: float | None, attempts: int
) -> None:
    kw = {
        "delay_seconds": delay,
        "exponential_backoff": True,
        "backoff_multiplier": multiplier,
        "max_delay_seconds": cap,
    }
    previous = 0.0
    for attempt in (1, 2, attempts, attempts + 1):
        value = delay_for_attempt(attempt, **kw)  # type: ignore[arg-type]
        assert 0 <= value <= (cap if cap is not None else HARD_CAP_SECONDS)
        assert value >= previous or attempt <= 2
        previous = value


def test_args_from_celery_reprs() -> None:
    call = parse_call_args("(42, 'Sean O\\'Brien')", "{'to': 'a@b.c', 'n': [1, 2]}")
    assert call.args == (42, "Sean O'Brien")
    assert call.kwargs_dict() == {"to": "a@b.c", "n": [1, 2]}
    assert parse_call_args(None, "") == parse_call_args("()", "{}")
    assert parse_call_args("[1, 2]", None).args == (1, 2)


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        ("([1, 2, 3, ...],)", None, "args were truncated by Celery"),
        ("([0, 1, 22..., ...],)", None, "args were truncated by Celery"),
        (
            "(<Foo object at 0x7f>,)",
            None,
            "args: '(<Foo object at 0x7f>,)' is not a plain Python literal",
        ),
        ("(datetime.datetime(2024, 1, 1),)", None, "not a plain Python literal"),
        ("42", None, "args: expected a tuple or list"),
        (None, "[1]", "kwargs: expected a dict"),
        (None, "{1: 2}", "kwargs: expected a dict with string keys"),
        ("(" + "1, " * 400_000 + ")", None, "too long to parse safely"),
    ],
)
def test_args_that_cannot_be_rebuilt_exactly_are_refused(
    args: str | None, kwargs: str | None, reason: str
) -> None:
    with pytest.raises(
        ArgsUnrecoverable, match=reason.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        parse_call_args(args, kwargs)


def test_truncation_names_the_setting_to_change() -> None:
    with pytest.raises(ArgsUnrecoverable) as info:
        parse_call_args(None, "{'items': [1, 2, ...]}")
    assert "kwargs were truncated" in str(info.value)
    assert "argsrepr_maxsize" in str(info.value)


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    args=st.lists(json_like, max_size=5),
    kwargs=st.dictionaries(st.text(max_size=8), json_like, max_size=4),
)
def test_reprs_of_json_like_values_round_trip_exactly(
    args: list[object], kwargs: dict[str, object]
) -> None:
    call = parse_call_args(repr(tuple(args)), repr(kwargs))
    assert call.args == tuple(args)
    assert call.kwargs_dict() == kwargs
