"""Failure fingerprints: one short id for "the same failure", whatever ids and numbers it carries.

A fingerprint is a hash of the task name, the exception type and the error message with
what changes from one occurrence to the next replaced by a placeholder: UUIDs, hex (``0x7f3a``),
ids mixing letters and digits (``ch_1NxYz8Kq2``, digests), quoted values (``'user-42'``) and
numbers. ``KeyError: 'order-17'`` on ``shop.charge`` and ``KeyError: 'order-99'`` share one;
a ``TimeoutError`` with the same message does not. Pure and stable across processes: the
replay, the Test button and the live app compute the same fingerprint for the same failure.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Protocol

#: A fingerprint: 16 lowercase hex digits (64 bits of BLAKE2b).
FINGERPRINT_PATTERN = r"^[0-9a-f]{16}$"
#: The normalized message is cut here: a megabyte of traceback groups by its start.
MAX_MESSAGE_CHARS = 2000

_EDGE_L = r"(?<![A-Za-z0-9])"
_EDGE_R = r"(?![A-Za-z0-9])"
# Order matters: a UUID holds hex and numbers, a quoted value may hold all of them.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), placeholder)
    for pattern, placeholder in (
        (_EDGE_L + r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}" + _EDGE_R, "<uuid>"),
        (r"(?<![A-Za-z0-9'])'[^'\n]*'(?![A-Za-z0-9])", "<str>"),
        (r'(?<![A-Za-z0-9"])"[^"\n]*"(?![A-Za-z0-9])', "<str>"),
        (_EDGE_L + r"0[xX][0-9a-fA-F]+" + _EDGE_R, "<hex>"),
        # An id: 8+ letters and digits with letters between two digits (``1NxYz8Kq2``,
        # ``9f86d081``); ``retry123`` is a word and a number, and stays ``retry<n>``.
        (_EDGE_L + r"(?=[A-Za-z0-9]*[0-9][A-Za-z]+[0-9])[A-Za-z0-9]{8,}" + _EDGE_R, "<id>"),
        (r"[0-9]+(?:\.[0-9]+)?", "<n>"),
        (r"\s+", " "),
    )
)


class FailureFields(Protocol):
    """What a fingerprint is made of: a trigger's task or an execution record's alike."""

    @property
    def name(self) -> str | None: ...
    @property
    def exception_type(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...


def normalize_message(message: str) -> str:
    """``message`` with its varying parts replaced: ``"id 42 at 0x7f"`` -> ``"id <n> at <hex>"``."""
    text = message[: MAX_MESSAGE_CHARS * 2]
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    return text.strip()[:MAX_MESSAGE_CHARS]


@functools.lru_cache(maxsize=4096)
def fingerprint(
    task_name: str | None, exception_type: str | None, error_message: str | None
) -> str | None:
    """The failure's fingerprint, or ``None`` when nothing says it failed (no type, no message).

    Cached: the record and every workflow's ``fingerprint`` condition ask for the same failure's.
    """
    if exception_type is None and error_message is None:
        return None
    material = "\x1f".join(
        (task_name or "", exception_type or "", normalize_message(error_message or ""))
    )
    return hashlib.blake2b(material.encode(), digest_size=8).hexdigest()


def fingerprint_of(task: FailureFields | None) -> str | None:
    """The fingerprint of a trigger's task (:class:`~topics.triggers.TaskContext`) or a record's."""
    if task is None:
        return None
    return fingerprint(task.name, task.exception_type, task.error_message)
