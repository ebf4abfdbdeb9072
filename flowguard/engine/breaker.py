"""The per-workflow circuit breaker: a rolling window over executions that ran actions.

An execution runs its actions while fewer than ``max_executions`` executions
ran actions in the trailing window ``(now - window_seconds, now]``. Otherwise
the circuit is open and the execution is skipped. The execution that opens
the circuit sends one notice; the first one that finds room again closes it
and reports how many were suppressed meanwhile. Skipped executions are not
counted: the window measures work done, so the circuit closes as soon as old
work leaves the window, however many failures keep arriving.

Event time can arrive slightly out of order. A breaker's clock only moves
forward: an execution earlier than the latest one seen is decided at that
latest time. So ``ran_at`` stays sorted, the window never moves back, and the
same inputs always give the same outputs.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, Literal

_NEVER = -math.inf


@dataclass(frozen=True, slots=True)
class BreakerState:
    """Kept per workflow, in a changelog table.

    ``ran_at``: times of the executions that ran actions and are still in the
    window, ascending, at most ``max_executions`` of them. ``open_since``: when
    the circuit opened, or ``None`` while closed. ``suppressed``: executions
    skipped since it opened. ``seen``: the latest time decided, the breaker's clock.
    """

    ran_at: tuple[float, ...] = ()
    open_since: float | None = None
    suppressed: int = 0
    seen: float = _NEVER

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (no infinity), for the changelog."""
        return {
            "ran_at": list(self.ran_at),
            "open_since": self.open_since,
            "suppressed": self.suppressed,
            "seen": None if self.seen == _NEVER else self.seen,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BreakerState:
        """The inverse of :meth:`to_dict`; numbers come back as floats whatever JSON made them."""
        seen, open_since = data.get("seen"), data.get("open_since")
        return cls(
            ran_at=tuple(sorted(float(t) for t in data.get("ran_at", ()))),
            open_since=None if open_since is None else float(open_since),
            suppressed=int(data.get("suppressed", 0)),
            seen=_NEVER if seen is None else float(seen),
        )


@dataclass(frozen=True, slots=True)
class BreakerDecision:
    """What one execution found.

    ``count``: executions that ran in the window after this decision.
    ``transition``: ``"opened"`` on the execution that opened the circuit (send the
    notice), ``"closed"`` on the first one that closed it (send the summary).
    ``suppressed_total``: on ``"closed"``, how many were skipped while open;
    otherwise the current number skipped.
    """

    allowed: bool
    state_label: Literal["closed", "open"]
    count: int
    transition: Literal["opened", "closed"] | None
    suppressed_total: int


def check(
    state: BreakerState, *, now: float, max_executions: int, window_seconds: float
) -> tuple[BreakerState, BreakerDecision]:
    """Decide one execution at ``now`` and record it; pure, returns the new state."""
    now = max(_checked(now, max_executions, window_seconds), state.seen)
    ran = _in_window(state.ran_at, now, window_seconds)[-max_executions:]
    if len(ran) < max_executions:
        ran = (*ran, now)
        closing = state.open_since is not None
        decision = BreakerDecision(
            allowed=True,
            state_label="closed",
            count=len(ran),
            transition="closed" if closing else None,
            suppressed_total=state.suppressed,
        )
        return BreakerState(ran_at=ran, seen=now), decision
    opening = state.open_since is None
    new = BreakerState(
        ran_at=ran,
        open_since=now if opening else state.open_since,
        suppressed=state.suppressed + 1,
        seen=now,
    )
    decision = BreakerDecision(
        allowed=False,
        state_label="open",
        count=len(ran),
        transition="opened" if opening else None,
        suppressed_total=new.suppressed,
    )
    return new, decision


def peek(
    state: BreakerState, *, now: float, max_executions: int, window_seconds: float
) -> Literal["closed", "open"]:
    """The state an execution at ``now`` would find, recording nothing (for the UI)."""
    now = max(_checked(now, max_executions, window_seconds), state.seen)
    ran = _in_window(state.ran_at, now, window_seconds)
    return "open" if len(ran) >= max_executions else "closed"


def _in_window(ran_at: tuple[float, ...], now: float, window_seconds: float) -> tuple[float, ...]:
    """The times in ``(now - window_seconds, now]``, found by bisecting the sorted ``ran_at``."""
    return ran_at[bisect_right(ran_at, now - window_seconds) :]


def _checked(now: float, max_executions: int, window_seconds: float) -> float:
    """Refuse limits that would make the window meaningless (a caller's bug, not user input)."""
    if not math.isfinite(now):
        raise ValueError(f"now must be a finite time, got {now}")
    if max_executions < 1:
        raise ValueError(f"max_executions must be >= 1, got {max_executions}")
    if not (math.isfinite(window_seconds) and window_seconds > 0):
        raise ValueError(f"window_seconds must be finite and > 0, got {window_seconds}")
    return now
