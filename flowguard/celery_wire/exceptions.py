"""Celery's exception reprs -> the exception's type and message.

Celery reports a task's exception as its repr (``KeyError('customer_id')``) in
``task-failed`` and ``task-retried``; the workflows' ``error_pattern`` and the
notices want the type and the message apart.
"""

from __future__ import annotations

import ast
import re

_EXC_REPR = re.compile(r"^\s*([A-Za-z_][\w.]*)\((.*)\)\s*$", re.DOTALL)


def split_exception(exception: str | None) -> tuple[str | None, str | None]:
    """``"KeyError('customer_id')"`` -> ``("KeyError", "customer_id")``.

    Celery reports the exception as its repr. The message is the repr's
    argument: a single string literal is unquoted, anything else is kept as
    written. ``'None'`` (``self.retry()`` without an exception) gives no type.
    """
    if exception is None or exception in ("", "None"):
        return None, None
    match = _EXC_REPR.match(exception)
    if match is None:
        return None, exception
    exc_type, inner = match.group(1), match.group(2).strip()
    return exc_type.rsplit(".", 1)[-1], _unquote(inner)


def _unquote(inner: str) -> str:
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        try:
            value = ast.literal_eval(inner)
        except (ValueError, SyntaxError):
            return inner
        if isinstance(value, str):
            return value
    return inner
