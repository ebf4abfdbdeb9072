"""The circuit breaker: a rolling window per workflow, one notice on open, a summary on close."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowguard.engine.breaker import BreakerDecision, BreakerState, check, peek

HOUR = 3600.0


@dataclass
class Run:
    decisions: list[BreakerDecision]
    states: list[BreakerState]

    @property
    def final(self) -> BreakerState:
        return self.states[-1]

    def allowed(self) -> list[bool]:
        return [d.allowed for d in self.decisions]

    def transitions(self) -> list[str]:
        return [d.transition for d in self.decisions if d.transition is not None]


def run(
    times: list[float],
    max_executions: int,
    window: float,
    state: BreakerState | None = None,
) -> Run:
    state = state or BreakerState()
    out = Run([], [])
    for now in times:
        state, decision = check(
            state, now=now, max_executions=max_executions, window_seconds=window
        )
        out.decisions.append(decision)
        out.states.append(state)
        assert len(state.ran_at) <= max_executions
    return out


def test_the_pages_scenario_fifty_per_hour() -> None:
    # Hour 1: a burst of 60 failures, one every 10 seconds.
    hour1 = run([i * 10.0 for i in range(60)], 50, HOUR)
    # 45 executions -> circuit CLOSED, actions run normally.
    assert all(d.allowed and d.state_label == "closed" for d in hour1.decisions[:45])
    assert hour1.decisions[44].count == 45
    # 51 executions -> circuit OPEN: the 51st and every later one in the hour are skipped,
    # and exactly one of them (the 51st) carries the notice.
    assert hour1.allowed() == [True] * 50 + [False] * 10
    assert hour1.transitions() == ["opened"]
    assert hour1.decisions[50].transition == "opened"
    assert all(d.state_label == "open" and d.count == 50 for d in hour1.decisions[50:])
    assert hour1.final.suppressed == 10
    assert peek(hour1.final, now=599, max_executions=50, window_seconds=HOUR) == "open"
    # Hour 2: the counter has reset -> CLOSED again, with the summary of what was skipped.
    assert peek(hour1.final, now=HOUR + 600, max_executions=50, window_seconds=HOUR) == "closed"
    hour2 = run([HOUR + 600 + i * 10.0 for i in range(45)], 50, HOUR, hour1.final)
    first = hour2.decisions[0]
    assert (first.allowed, first.state_label, first.count) == (True, "closed", 1)
    assert (first.transition, first.suppressed_total) == ("closed", 10)
    assert all(hour2.allowed())
    assert hour2.transitions() == ["closed"]
    assert hour2.final == BreakerState(
        ran_at=tuple(HOUR + 600 + i * 10.0 for i in range(45)), seen=HOUR + 600 + 440
    )


def test_sixty_failures_in_a_minute_against_fifty() -> None:
    result = run([i * 1.0 for i in range(60)], 50, HOUR)
    assert result.allowed().count(True) == 50
    assert result.allowed().count(False) == 10
    assert result.transitions() == ["opened"]
    assert result.decisions[-1].suppressed_total == 10


def test_the_window_rolls_rather_than_resetting_on_the_hour() -> None:
    # Full at t=0..4; at t=10 the execution from t=0 has left the window (10-10, 10].
    result = run([0, 1, 2, 3, 4, 5, 9.999, 10, 10.5], 5, 10)
    assert result.allowed() == [True] * 5 + [False, False, True, False]
    assert result.transitions() == ["opened", "closed", "opened"]
    closed = result.decisions[7]
    assert (closed.suppressed_total, closed.count) == (2, 5)
    assert result.decisions[8].suppressed_total == 1, "a new opening counts from zero"


def test_an_execution_exactly_one_window_later_finds_room() -> None:
    # The window is (now - window_seconds, now]: the one at 0 is out of it at 10.
    result = run([0, 10], 1, 10)
    assert result.allowed() == [True, True]
    assert result.decisions[1].count == 1


def test_skipped_executions_do_not_keep_the_circuit_open() -> None:
    # One failure per second for a minute against 2 per 10 seconds: work done is what counts.
    result = run([float(i) for i in range(60)], 2, 10)
    assert result.allowed().count(True) == 12
    assert all(len(s.ran_at) <= 2 for s in result.states)


def test_late_events_are_decided_at_the_latest_time_seen() -> None:
    state, _ = check(BreakerState(), now=100, max_executions=2, window_seconds=10)
    state, late = check(state, now=50, max_executions=2, window_seconds=10)
    assert late.allowed
    assert state.ran_at == (100, 100)
    assert state.seen == 100
    state, full = check(state, now=95, max_executions=2, window_seconds=10)
    assert (full.allowed, full.transition) == (False, "opened")
    assert peek(state, now=0, max_executions=2, window_seconds=10) == "open"


def test_peek_records_nothing() -> None:
    state = run([0.0, 1.0], 2, 10).final
    assert peek(state, now=2, max_executions=2, window_seconds=10) == "open"
    assert peek(state, now=10.5, max_executions=2, window_seconds=10) == "closed"
    assert state == run([0.0, 1.0], 2, 10).final


def test_lowering_the_limit_keeps_the_latest_executions() -> None:
    state = run([0.0, 1.0, 2.0, 3.0], 10, 100).final
    state, decision = check(state, now=4, max_executions=2, window_seconds=100)
    assert (decision.allowed, decision.count, decision.transition) == (False, 2, "opened")
    assert state.ran_at == (2.0, 3.0)


@pytest.mark.parametrize(
    ("now", "max_executions", "window", "message"),
    [
        (math.nan, 1, 10, "now must be a finite time"),
        (math.inf, 1, 10, "now must be a finite time"),
        (0, 0, 10, "max_executions must be >= 1"),
        (0, 1, 0, "window_seconds must be finite and > 0"),
        (0, 1, -5, "window_seconds must be finite and > 0"),
        (0, 1, math.inf, "window_seconds must be finite and > 0"),
    ],
)
def test_meaningless_limits_are_refused(
    now: float, max_executions: int, window: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check(BreakerState(), now=now, max_executions=max_executions, window_seconds=window)
    with pytest.raises(ValueError, match=message):
        peek(BreakerState(), now=now, max_executions=max_executions, window_seconds=window)


def test_serialization_round_trip_through_json() -> None:
    for state in [*run([1.0, 2.0, 3.0, 4.0], 2, 10).states, BreakerState()]:
        data = json.loads(json.dumps(state.to_dict(), allow_nan=False))
        assert BreakerState.from_dict(data) == state
    # JSON may hand back ints; they come back as floats, and missing keys mean "fresh".
    restored = BreakerState.from_dict({"ran_at": [1, 2], "open_since": 3, "seen": 3})
    assert restored == BreakerState(ran_at=(1.0, 2.0), open_since=3.0, seen=3.0)
    assert all(type(t) is float for t in restored.ran_at)
    assert BreakerState.from_dict({}) == BreakerState()


limits = st.integers(min_value=1, max_value=8)
windows = st.integers(min_value=1, max_value=60).map(float) | st.floats(
    min_value=0.01, max_value=200, allow_nan=False
)
gaps = st.lists(
    st.integers(min_value=0, max_value=20).map(float)
    | st.floats(min_value=0, max_value=50, allow_nan=False),
    min_size=1,
    max_size=120,
)


def cumulative(steps: list[float]) -> list[float]:
    times, now = [], 0.0
    for step in steps:
        now += step
        times.append(now)
    return times


def in_window(times: list[float], now: float, window: float) -> int:
    return sum(1 for t in times if now - window < t <= now)


@settings(max_examples=400)
@given(steps=gaps, max_executions=limits, window=windows)
def test_window_invariants(steps: list[float], max_executions: int, window: float) -> None:
    times = cumulative(steps)
    result = run(times, max_executions, window)
    allowed = [t for t, d in zip(times, result.decisions, strict=True) if d.allowed]
    # (a) never more than max_executions allowed inside any window
    for t in allowed:
        assert in_window(allowed, t, window) <= max_executions
    # (b) refused exactly when max_executions allowed ones lie in its trailing window
    for index, (t, decision) in enumerate(zip(times, result.decisions, strict=True)):
        before = [u for u, d in zip(times[:index], result.decisions, strict=False) if d.allowed]
        assert decision.allowed == (in_window(before, t, window) < max_executions)
        assert decision.count == in_window(before, t, window) + decision.allowed
    # (c) transitions alternate, starting with "opened"
    transitions = result.transitions()
    assert transitions == [("opened", "closed")[i % 2] for i in range(len(transitions))]
    # (d) every refusal is summed up once on a "closed" transition, or is still pending
    refused = result.allowed().count(False)
    summaries = sum(d.suppressed_total for d in result.decisions if d.transition == "closed")
    assert summaries + result.final.suppressed == refused
    # the state label agrees with the state, and open_since is set exactly while open
    for decision, state in zip(result.decisions, result.states, strict=True):
        assert decision.state_label == ("closed" if decision.allowed else "open")
        assert (state.open_since is None) == decision.allowed
        assert list(state.ran_at) == sorted(state.ran_at)


@settings(max_examples=200)
@given(
    times=st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=60),
    max_executions=limits,
    window=windows,
)
def test_out_of_order_times_are_decided_at_the_running_maximum(
    times: list[float], max_executions: int, window: float
) -> None:
    shuffled = run(times, max_executions, window)
    clamped = run([max(times[: i + 1]) for i in range(len(times))], max_executions, window)
    assert shuffled.decisions == clamped.decisions
    assert shuffled.states == clamped.states
    assert list(shuffled.final.ran_at) == sorted(shuffled.final.ran_at)
    assert run(times, max_executions, window).decisions == shuffled.decisions, "deterministic"


@settings(max_examples=200)
@given(steps=gaps, max_executions=limits, window=windows, probe=st.floats(0, 100))
def test_peek_agrees_with_check_and_records_nothing(
    steps: list[float], max_executions: int, window: float, probe: float
) -> None:
    state = run(cumulative(steps), max_executions, window).final
    now = state.seen + probe
    label = peek(state, now=now, max_executions=max_executions, window_seconds=window)
    _, decision = check(state, now=now, max_executions=max_executions, window_seconds=window)
    assert label == decision.state_label


@settings(max_examples=200)
@given(steps=gaps, max_executions=limits, window=windows)
def test_every_state_survives_the_changelog(
    steps: list[float], max_executions: int, window: float
) -> None:
    for state in run(cumulative(steps), max_executions, window).states:
        data = json.loads(json.dumps(state.to_dict(), allow_nan=False))
        assert BreakerState.from_dict(data) == state
