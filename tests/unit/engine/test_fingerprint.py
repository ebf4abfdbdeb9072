"""Failure fingerprints (flowguard/engine/fingerprint.py): the same failure with other ids and
numbers shares one; another task or exception type does not."""

from __future__ import annotations

import re
import uuid

from hypothesis import given
from hypothesis import strategies as st

from flowguard.engine.fingerprint import (
    FINGERPRINT_PATTERN,
    MAX_MESSAGE_CHARS,
    fingerprint,
    normalize_message,
)

WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwyz_", min_size=1, max_size=10)
SEPARATORS = st.sampled_from([" ", ": ", ", ", " = ", " (", ") ", " / ", "; "])
QUOTABLE = st.text(
    alphabet=st.characters(blacklist_characters="'\"\n", blacklist_categories=("Cs",)),
    max_size=30,
)


def _value(kind: str, draw: st.DrawFn) -> str:
    """One varying value of ``kind``, as a failure message would carry it."""
    match kind:
        case "int":
            return str(draw(st.integers(min_value=0, max_value=10**12)))
        case "float":
            return f"{draw(st.floats(min_value=0, max_value=1e6, allow_nan=False)):.3f}"
        case "uuid":
            return str(uuid.UUID(int=draw(st.integers(min_value=0, max_value=2**128 - 1))))
        case "hex":
            return hex(draw(st.integers(min_value=0, max_value=2**64)))
        case "id":
            return "".join(draw(st.lists(st.sampled_from("ab3x7Kq9"), min_size=4, max_size=12)))
        case _:
            quote = "'" if kind == "single" else '"'
            return quote + draw(QUOTABLE) + quote


KINDS = st.sampled_from(["int", "float", "uuid", "hex", "id", "single", "double"])


@st.composite
def renumbered(draw: st.DrawFn) -> tuple[str, str]:
    """One message template filled twice with different values of the same kinds."""
    parts = draw(st.lists(st.tuples(WORDS, SEPARATORS, KINDS, SEPARATORS), min_size=1, max_size=6))
    first, second = [], []
    for word, before, kind, after in parts:
        # an id is letters between digits: give each one that shape so it reads as an id
        a, b = _value(kind, draw), _value(kind, draw)
        if kind == "id":
            a, b = f"1{a}2x3", f"4{b}5y6"
        first.append(f"{word}{before}{a}{after}")
        second.append(f"{word}{before}{b}{after}")
    return "".join(first), "".join(second)


@given(renumbered(), WORDS, WORDS)
def test_stable_under_renumbering(messages: tuple[str, str], task: str, exc: str) -> None:
    one, other = messages
    assert normalize_message(one) == normalize_message(other)
    assert fingerprint(task, exc, one) == fingerprint(task, exc, other)


@given(WORDS, st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=10**9))
def test_a_number_glued_to_a_word_is_still_a_number(word: str, a: int, b: int) -> None:
    assert normalize_message(f"retry {word}{a} failed") == normalize_message(
        f"retry {word}{b} failed"
    )


@given(WORDS, WORDS, WORDS, renumbered())
def test_different_exception_types_differ(
    task: str, exc: str, other: str, msgs: tuple[str, str]
) -> None:
    if exc == other:
        other += "Error"
    assert fingerprint(task, exc, msgs[0]) != fingerprint(task, other, msgs[0])


@given(WORDS, WORDS, WORDS)
def test_different_tasks_differ(task: str, other: str, exc: str) -> None:
    if task == other:
        other += ".v2"
    assert fingerprint(task, exc, "boom") != fingerprint(other, exc, "boom")


def test_the_words_of_a_message_count() -> None:
    assert fingerprint("t", "OSError", "connection refused") != fingerprint(
        "t", "OSError", "disk full"
    )


def test_what_is_normalized() -> None:
    cases = {
        "KeyError: 'order-17'": "KeyError: <str>",
        'no such user "ann" (id 42)': "no such user <str> (id <n>)",
        "object at 0x7f3a12bc": "object at <hex>",
        "row 4f9c2d3e-1a2b-4c5d-8e9f-0a1b2c3d4e5f gone": "row <uuid> gone",
        "charge ch_1NxYz8Kq2 declined": "charge ch_<id> declined",
        "can't reach 'db' in 3.5s": "can't reach <str> in <n>s",
        "  spread\n\tover   lines ": "spread over lines",
    }
    assert {m: normalize_message(m) for m in cases} == cases


def test_shape_and_no_failure() -> None:
    value = fingerprint("shop.charge", "KeyError", "'order-17'")
    assert value is not None
    assert re.match(FINGERPRINT_PATTERN, value)
    assert fingerprint("shop.charge", None, None) is None
    assert fingerprint("shop.charge", None, "") is not None  # an empty message is still a failure
    # fixed: another process, another run, another version of Python give the same
    assert value == "072e75f4db0c7640"


def test_only_the_start_of_a_huge_message_counts() -> None:
    head = "x " * (MAX_MESSAGE_CHARS // 2)
    assert fingerprint("t", "E", head + "tail one") == fingerprint("t", "E", head + "tail two")
    assert fingerprint("t", "E", "tail one") != fingerprint("t", "E", "tail two")
