"""Retry planning: backoff delays, and recovering the exact args from Celery's reprs."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from celery.utils.saferepr import saferepr
from hypothesis import given, settings
from hypothesis import strategies as st

from flowguard.engine.retry import (
    HARD_CAP_SECONDS,
    MAX_REPR_CHARS,
    CallArgs,
    delay_for_attempt,
    parse_call_args,
)
from flowguard.errors import ArgsUnrecoverable

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


# --- args -----------------------------------------------------------------------------------


def test_args_from_celery_reprs() -> None:
    call = parse_call_args("(42, 'Sean O\\'Brien')", "{'to': 'a@b.c', 'n': [1, 2]}")
    assert call.args == (42, "Sean O'Brien")
    assert call.kwargs_dict() == {"to": "a@b.c", "n": [1, 2]}
    assert parse_call_args("[1, 2]", None).args == (1, 2)
    assert parse_call_args("(1,)", "{}").args == (1,)
    assert parse_call_args("('tab\there', \"double 'quoted'\")", None).args == (
        "tab\there",
        "double 'quoted'",
    )


@pytest.mark.parametrize("empty", [None, "", "   ", "()", "[]"])
def test_no_args_means_an_empty_call(empty: str | None) -> None:
    call = parse_call_args(empty, None if empty in ("()", "[]") else empty)
    assert call == CallArgs((), call.kwargs)
    assert call.args == ()
    assert call.kwargs_dict() == {}


def test_kwargs_are_read_only_and_kwargs_dict_is_a_copy() -> None:
    call = parse_call_args(None, "{'a': 1}")
    with pytest.raises(TypeError):
        call.kwargs["a"] = 2  # type: ignore[index]
    copy = call.kwargs_dict()
    copy["a"] = 2
    assert call.kwargs["a"] == 1


CUT = "truncated by Celery"


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        # length cuts: Celery appends ", ..." inside the container, or "..." to a string
        ("[1, 2, 3, ...]", None, f"args were {CUT} (argsrepr_maxsize"),
        ("([1, 2, 3, ...],)", None, f"args were {CUT}"),
        ("('aaaa...', 2)", None, f"args were {CUT}"),
        ("('xxx', , ...)", None, f"args were {CUT}"),
        ("([1, , ...])", None, f"args were {CUT}"),
        ("(123...)", None, f"args were {CUT}"),
        (None, "{'items': [1, 2, ...]}", f"kwargs were {CUT} (kwargsrepr_maxsize"),
        (None, "{'a': 1, , ...}", f"kwargs were {CUT}"),
        (None, "{'a', ...}", f"kwargs were {CUT}"),
        (None, "{'note': 'see the attached...'}", f"kwargs were {CUT}"),
        # depth cuts: containers nested deeper than task_repr_maxlevels show as [...]
        ("(1, [2, [3, [...]]])", None, "args were cut short by Celery (nested too deep"),
        (None, "{'a': {'b': {...}}}", "task_repr_maxlevels"),
        # not literals at all
        ("(<Foo object at 0x7f>,)", None, "args: '(<Foo object at 0x7f>,)' is not a plain"),
        ("(datetime.datetime(2024, 1, 1),)", None, "is not a plain Python literal"),
        ("(Decimal('1.0'),)", None, "is not a plain Python literal"),
        ("(1.5, inf)", None, "is not a plain Python literal"),
        ("(frozenset({1}),)", None, "is not a plain Python literal"),
        ("__import__('os').system('true')", None, "is not a plain Python literal"),
        ("('a\nb',)", None, "a string with a line break or a backslash"),
        (None, "{'a': (1, 2}", "kwargs: \"{'a': (1, 2}\" is not a plain Python literal"),
        # literals Celery's repr makes ambiguous
        ("('C:\\new',)", None, "args: a string contains a backslash"),
        ("('a\\\\b',)", None, "args: a string contains a backslash"),
        ("(r'it\\'s',)", None, "args: a string contains a backslash"),
        ("(b'ff00',)", None, "args: contains bytes"),
        # wrong shapes
        ("42", None, "args: expected a tuple or list, got int"),
        ("{'a': 1}", None, "args: expected a tuple or list, got dict"),
        (None, "[1]", "kwargs: expected a dict, got list"),
        (None, "{1: 2}", "kwargs: expected a dict with string keys"),
        # bounded work
        ("(" + "1, " * 400_000 + ")", None, "args: 1200002 characters is longer than"),
        ("(" * 100_000 + ")" * 100_000, None, "is not a plain Python literal"),
    ],
)
def test_args_that_cannot_be_rebuilt_exactly_are_refused(
    args: str | None, kwargs: str | None, reason: str
) -> None:
    with pytest.raises(ArgsUnrecoverable, match=re.escape(reason)):
        parse_call_args(args, kwargs)


def test_truncation_tells_what_to_change() -> None:
    with pytest.raises(ArgsUnrecoverable) as info:
        parse_call_args(saferepr((list(range(1000)),), 1024), None)
    assert "app.amqp.argsrepr_maxsize" in str(info.value)
    assert "default 1024 characters" in str(info.value)


def test_the_length_bound_is_inclusive() -> None:
    def of_length(n: int) -> str:
        return "('" + "a" * (n - 5) + "',)"

    assert parse_call_args(of_length(MAX_REPR_CHARS), None).args == ("a" * (MAX_REPR_CHARS - 5),)
    with pytest.raises(ArgsUnrecoverable, match="longer than flowguard parses"):
        parse_call_args(of_length(MAX_REPR_CHARS + 1), None)


# Values Celery can report exactly: JSON-like, with printable strings (Celery leaves backslashes
# and control characters unescaped, Python's repr escapes them) not ending in "..." (its cut mark).
plain_text = st.text(
    st.characters(codec="utf-8").filter(lambda c: c.isprintable() and c != "\\")
).filter(lambda s: not s.endswith("..."))
json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | plain_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(plain_text, children, max_size=4)
    ),
    max_leaves=12,
)


def same(a: object, b: object) -> bool:
    """Equal and of the same types all the way down (True is not 1, (1,) is not [1])."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and a == b  # type: ignore[arg-type]
    return a == b


@settings(max_examples=300)
@given(
    args=st.lists(json_like, max_size=5),
    kwargs=st.dictionaries(plain_text.filter(bool), json_like, max_size=4),
)
def test_python_reprs_of_plain_values_round_trip_exactly(
    args: list[object], kwargs: dict[str, object]
) -> None:
    call = parse_call_args(repr(tuple(args)), repr(kwargs))
    assert same(call.args, tuple(args))
    assert same(call.kwargs_dict(), kwargs)


# Anything Celery may be handed, including what its repr cannot show exactly.
anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary(max_size=8)
    | st.sampled_from(["...", "Loading...", "C:\\new", "it's", 'say "hi"', "a\nb", "\\'"]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=500)
@given(
    args=st.lists(anything, max_size=6),
    kwargs=st.dictionaries(st.text(max_size=6), anything, max_size=4),
    maxsize=st.sampled_from([1024, 200, 40, 8]),
    maxlevels=st.integers(min_value=1, max_value=4),
)
def test_celery_reprs_give_the_exact_values_or_a_refusal_never_wrong_ones(
    args: list[object], kwargs: dict[str, object], maxsize: int, maxlevels: int
) -> None:
    args_repr = saferepr(tuple(args), maxsize, maxlevels=maxlevels)
    kwargs_repr = saferepr(kwargs, maxsize, maxlevels=maxlevels)
    try:
        call = parse_call_args(args_repr, kwargs_repr)
    except ArgsUnrecoverable:
        return
    assert same(call.args, tuple(args)), args_repr
    assert same(call.kwargs_dict(), kwargs), kwargs_repr


@given(args=st.lists(json_like, max_size=5))
def test_celery_reprs_of_short_plain_values_are_recovered(args: list[object]) -> None:
    text = saferepr(tuple(args), 1024)
    if len(text) < 1024 and "..." not in text:
        assert same(parse_call_args(text, None).args, tuple(args))


@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_with_args_unrecoverable(text: str) -> None:
    try:
        call = parse_call_args(text, text)
    except ArgsUnrecoverable as exc:
        refusal = str(exc)
    else:
        assert isinstance(call.args, tuple)
        return
    assert refusal.startswith(("args", "kwargs")), "every refusal names its field"
