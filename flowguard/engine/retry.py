"""Retry planning: how long to wait before attempt N, and the exact args to send again.

Celery reports args and kwargs as repr strings (``argsrepr``), cut at about
1024 characters. A retry must send exactly what the task got, so the repr is
parsed as a Python literal (``ast.literal_eval``, never ``eval``); when it was
cut or is not a literal, the retry is refused with what to change, rather
than sent with wrong arguments.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from flowguard.errors import ArgsUnrecoverable

MAX_REPR_CHARS = 1 << 20
HARD_CAP_SECONDS = 7 * 24 * 3600.0
_TRUNCATED_HINT = (
    "raise app.amqp.argsrepr_maxsize and kwargsrepr_maxsize (default 1024 characters) where "
    "the task is sent, or keep arguments small (pass an id, not the data)"
)


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
    Both are capped at ``max_delay_seconds``, and always at a week: the comparison is
    made in logs, so a huge attempt number cannot overflow.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    cap = (
        HARD_CAP_SECONDS if max_delay_seconds is None else min(max_delay_seconds, HARD_CAP_SECONDS)
    )
    if not exponential_backoff or delay_seconds <= 0 or backoff_multiplier <= 1:
        return float(min(delay_seconds, cap))
    exponent = attempt - 1
    if math.log(delay_seconds) + exponent * math.log(backoff_multiplier) >= math.log(cap):
        return float(cap)
    return float(delay_seconds * backoff_multiplier**exponent)


@dataclass(frozen=True, slots=True)
class CallArgs:
    """Recovered positional and keyword arguments (kwargs is a read-only mapping)."""

    args: tuple[Any, ...]
    kwargs: MappingProxyType[str, Any]

    def kwargs_dict(self) -> dict[str, Any]:
        return dict(self.kwargs)


def parse_call_args(args_repr: str | None, kwargs_repr: str | None) -> CallArgs:
    """Celery's ``args``/``kwargs`` reprs -> the exact values, or :class:`ArgsUnrecoverable`."""
    args = _literal("args", args_repr, ())
    if not isinstance(args, tuple | list):
        raise ArgsUnrecoverable(f"args: expected a tuple or list, got {type(args).__name__}")
    kwargs = _literal("kwargs", kwargs_repr, {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ArgsUnrecoverable("kwargs: expected a dict with string keys")
    return CallArgs(tuple(args), MappingProxyType(kwargs))


def _literal(field: str, text: str | None, empty: Any) -> Any:
    if text is None or not text.strip():
        return empty
    if len(text) > MAX_REPR_CHARS:
        raise ArgsUnrecoverable(f"{field}: {len(text)} characters is too long to parse safely")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if "..." in text[-8:]:
            raise ArgsUnrecoverable(
                f"{field} were truncated by Celery: {_TRUNCATED_HINT}"
            ) from None
        raise ArgsUnrecoverable(
            f"{field}: {_excerpt(text)} is not a plain Python literal, so flowguard cannot "
            "rebuild it exactly; pass JSON-like arguments (numbers, strings, lists, dicts)"
        ) from None
    if _truncated(value, len(text)):
        raise ArgsUnrecoverable(f"{field} were truncated by Celery: {_TRUNCATED_HINT}")
    return value


# Celery's saferepr cuts a long container with ``...`` (which parses as Ellipsis) and a
# long string with a trailing ``...``; a repr shorter than this cannot have been cut.
SHORTEST_CUT = 1000


def _truncated(value: Any, length: int) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if item is Ellipsis:
            return True
        if isinstance(item, str) and length >= SHORTEST_CUT and item.endswith("..."):
            return True
        if isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return False


def _excerpt(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
