"""Records on ``flowguard.dlq``: input that could not be used, kept with the reason.

The raw payload is kept as text (bytes that are not UTF-8 are decoded with replacement, and
``raw_base64`` keeps them exactly), up to :data:`KEEP_BYTES`: a larger one is cut and the
reason says so (its whole is still on its own topic, at the partition and offset named).
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from pydantic import Field

from topics.record import Record

#: The most of a payload a dead letter keeps: an eighth of Kafka's default 1 MB record, so the
#: letter fits even with every byte JSON-escaped (6) or kept twice (text and base64).
KEEP_BYTES = 1_000_000 // 8


class DeadLetter(Record):
    kind: Literal["dlq.record"] = "dlq.record"
    version: Literal[1] = 1
    source: str = Field(description="Who refused it: 'bridge' or a worker stage such as 'events'.")
    cluster: str | None = None
    topic: str | None = Field(default=None, description="Where it was read from, if a topic.")
    partition: int | None = None
    offset: int | None = None
    reason: str
    raw: str = Field(description="The payload as text.")
    raw_base64: str | None = Field(default=None, description="The exact bytes, when not UTF-8.")
    at: str = Field(description="ISO 8601 UTC, wall clock.")

    @classmethod
    def of_bytes(
        cls, reason: str, data: bytes, at: str, *, keep_bytes: int = KEEP_BYTES, **where: Any
    ) -> DeadLetter:
        """A dead letter for a payload: text when it is UTF-8, the exact bytes in base64 if not;
        cut to its first ``keep_bytes`` (the reason says so), so the letter always fits a
        record however large the payload was."""
        if len(data) > keep_bytes:
            reason = f"{reason}; raw cut to its first {keep_bytes} of {len(data)} bytes"
            data = data[:keep_bytes]
        try:
            text, exact = data.decode(), None
        except UnicodeDecodeError:
            text, exact = data.decode(errors="replace"), base64.b64encode(data).decode()
        return cls(reason=reason, raw=text, raw_base64=exact, at=at, **where)
