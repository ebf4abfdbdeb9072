"""Celery's ``args``/``kwargs`` reprs -> the exact values a retry sends again.

Celery reports args and kwargs as repr strings (``argsrepr``) made by its own
``saferepr``, not Python's ``repr``: cut at ``argsrepr_maxsize`` characters
(default 1024) and ``task_repr_maxlevels`` levels of nesting (default 3), with
``'`` written as ``\\'`` but backslashes, bytes and line breaks left as they
are. A retry must send exactly what the task got, so the repr is parsed as a
Python literal (``ast.literal_eval``, never ``eval``) and refused whenever the
text could stand for more than one value: a retry with wrong arguments is
worse than no retry.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from types import MappingProxyType

from flowguard.errors import ArgsUnrecoverable

MAX_REPR_CHARS = 1 << 20

_DEPTH_HINT = (
    "raise task_repr_maxlevels (default 3) where the task is sent, or pass flatter arguments"
)
# Celery writes a container nested deeper than task_repr_maxlevels as "[...]", "(...)",
# "(...,)" or "{...}"; a length cut ends in ", ..." instead.
_DEPTH_MARK = re.compile(r"[(\[{]\.\.\.,?[)\]}]")
_CLOSERS = " \t\n)]},"


@dataclass(frozen=True, slots=True)
class CallArgs:
    """Recovered positional and keyword arguments.

    ``kwargs`` is a read-only view; nested lists and dicts inside the values are
    the parsed objects themselves and must not be mutated (copy them first).
    """

    args: tuple[object, ...]
    kwargs: MappingProxyType[str, object]

    def kwargs_dict(self) -> dict[str, object]:
        """A fresh, mutable ``dict`` of the keyword arguments (for ``send_task``)."""
        return dict(self.kwargs)


def parse_call_args(args_repr: str | None, kwargs_repr: str | None) -> CallArgs:
    """Celery's ``args``/``kwargs`` reprs -> the exact values, or :class:`ArgsUnrecoverable`.

    ``None`` or empty text means no arguments. The error names the field, the
    reason, and what to change where the task is sent.
    """
    args = _recover("args", args_repr, ())
    if not isinstance(args, tuple | list):
        raise ArgsUnrecoverable(f"args: expected a tuple or list, got {type(args).__name__}")
    kwargs = _recover("kwargs", kwargs_repr, {})
    if not isinstance(kwargs, dict):
        raise ArgsUnrecoverable(f"kwargs: expected a dict, got {type(kwargs).__name__}")
    if not all(isinstance(key, str) for key in kwargs):
        raise ArgsUnrecoverable("kwargs: expected a dict with string keys")
    return CallArgs(tuple(args), MappingProxyType(kwargs))


def _recover(field: str, text: str | None, empty: object) -> object:
    """One repr -> its value, refusing anything Celery may have cut or rendered ambiguously."""
    if text is None or not text.strip():
        return empty
    if len(text) > MAX_REPR_CHARS:
        raise ArgsUnrecoverable(
            f"{field}: {len(text)} characters is longer than flowguard parses "
            f"({MAX_REPR_CHARS}); pass smaller arguments (an id, not the data)"
        )
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if text.rstrip(_CLOSERS).endswith("..."):
            raise ArgsUnrecoverable(_cut_message(field, text)) from None
        raise ArgsUnrecoverable(_not_literal_message(field, text)) from None
    problem = _ambiguity(value) or ("escape" if _has_unsafe_escape(text) else None)
    if problem == "cut":
        raise ArgsUnrecoverable(_cut_message(field, text))
    if problem is not None:
        raise ArgsUnrecoverable(f"{field}: {_AMBIGUOUS[problem]}")
    return value


_AMBIGUOUS = {
    "bytes": (
        "contains bytes, which Celery reports as text or as hex, so flowguard cannot tell "
        "which bytes were sent; pass text (or base64) instead"
    ),
    "escape": (
        "a string contains a backslash, which Celery's repr leaves unescaped (a backslash "
        "and an n could be those two characters or a line break), so flowguard cannot "
        "rebuild it exactly; pass such values by reference (an id, not the data)"
    ),
}


def _ambiguity(value: object) -> str | None:
    """``"cut"`` if Celery's truncation marks are in the value, ``"bytes"`` for bytes, else None.

    Celery marks a cut container with ``...`` (parsed as ``Ellipsis``) and a cut
    string with a trailing ``...``. A string that really ends in ``...`` looks
    exactly the same, so it is refused too.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if item is Ellipsis or (isinstance(item, str) and item.endswith("...")):
            return "cut"
        if isinstance(item, bytes):
            return "bytes"
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return None


def _has_unsafe_escape(text: str) -> bool:
    r"""True when a backslash could mean two things.

    Celery writes ``'`` as ``\'`` and leaves every other backslash alone, so
    ``\'`` is the only escape that means the same to Celery and to Python.
    A raw string (``r'...'``, never written by Celery) would keep ``\'`` as two
    characters, so any string prefix other than ``u`` is refused with it.
    """
    if "\\" not in text:
        return False
    if "\\" in text.replace("\\'", ""):
        return True
    return re.search(r"(?<![\w'\"])[rRbBfF]+['\"]", text) is not None


def _cut_message(field: str, text: str) -> str:
    if _DEPTH_MARK.search(text):
        return f"{field} were cut short by Celery (nested too deep to show): {_DEPTH_HINT}"
    return (
        f"{field} were truncated by Celery ({field}repr_maxsize, default 1024 characters; "
        f"a '...' marks the cut): raise app.amqp.{field}repr_maxsize where the task is sent, "
        "or pass smaller arguments (an id, not the data)"
    )


def _not_literal_message(field: str, text: str) -> str:
    excerpt = repr(text if len(text) <= 60 else text[:60] + "…")
    why = (
        " (a string with a line break or a backslash comes out of Celery unescaped)"
        if "\n" in text or "\\" in text
        else ""
    )
    return (
        f"{field}: {excerpt} is not a plain Python literal{why}, so flowguard cannot rebuild "
        "it exactly; pass plain arguments (numbers, strings, lists, dicts with string keys), "
        "e.g. an ISO date string instead of a datetime, an id instead of an object"
    )
