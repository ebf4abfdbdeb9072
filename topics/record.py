"""The base of every record flowguard puts on a topic, and how times are written on the wire."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """Frozen, closed to unknown fields: a record's shape is its contract."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with ``Z`` (microseconds kept), the wire format for times."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def from_iso(text: str) -> float:
    """ISO 8601 (``Z`` or an offset) -> UTC epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def absent(value: object) -> bool:
    """``exclude_if`` of a field added later: left out of the JSON when None, so a record that
    does not use it reads as before to older readers (records are closed to unknown fields)."""
    return value is None
