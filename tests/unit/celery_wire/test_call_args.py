"""Recovering the exact args from Celery's reprs (flowguard/celery_wire/call_args.py)."""

from __future__ import annotations

import math
import re

import pytest
from celery.utils.saferepr import saferepr
from hypothesis import given, settings
from hypothesis import strategies as st

from flowguard.celery_wire.call_args import MAX_REPR_CHARS, CallArgs, parse_call_args
from flowguard.errors import ArgsUnrecoverable


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
