"""The per-workflow circuit breaker: a rolling window over executions that ran actions.

An execution runs its actions while fewer than ``max_executions`` executions
ran actions in the trailing window ``(now - window_seconds, now]``. Otherwise
the circuit is open and the execution is skipped. The execution that opens
the circuit sends one notice; the first one that finds room again closes it
and reports how many were suppressed meanwhile.

Event time can arrive slightly out of order; ``now`` is taken as the latest
time this breaker has seen, so the window never moves back and the same
inputs always give the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class BreakerState:
    """Kept per workflow. ``ran_at`` holds at most ``max_executions`` times, ascending."""

    ran_at: tuple[float, ...] = ()
    open_since: float | None = None
    suppressed: int = 0
    seen: float = float("-inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ran_at": list(self.ran_at),
            "open_since": self.open_since,
            "suppressed": self.suppressed,
            "seen": None if self.seen == float("-inf") else self.seen,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BreakerState:
        seen = data.get("seen")
        return cls(
            ran_at=tuple(data.get("ran_at", ())),
            open_since=data.get("open_since"),
            suppressed=int(data.get("suppressed", 0)),
            seen=float("-inf") if seen is None else float(seen),
        )


@dataclass(frozen=True, slots=True)
class BreakerDecision:
    allowed: bool
    state_label: Literal["closed", "open"]
    count: int
    transition: Literal["opened", "closed"] | None
    suppressed_total: int


def _in_window(ran_at: tuple[float, ...], now: float, window_seconds: float) -> tuple[float, ...]:
    start = now - window_seconds
    for index, ts in enumerate(ran_at):
        if ts > start:
            return ran_at[index:]
    return ()


def check(
    state: BreakerState, *, now: float, max_executions: int, window_seconds: float
) -> tuple[BreakerState, BreakerDecision]:
    """Decide one execution and record it. Pure: returns the new state."""
    now = max(now, state.seen)
    ran = _in_window(state.ran_at, now, window_seconds)[-max_executions:]
    if len(ran) < max_executions:
        ran = (*ran, now)
        reopened = state.open_since is not None
        decision = BreakerDecision(
            allowed=True,
            state_label="closed",
            count=len(ran),
            transition="closed" if reopened else None,
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
    """The state an execution at ``now`` would find, without recording anything."""
    ran = _in_window(state.ran_at, max(now, state.seen), window_seconds)
    return "open" if len(ran) >= max_executions else "closed"
