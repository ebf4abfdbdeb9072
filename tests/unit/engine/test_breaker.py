"""The circuit breaker: a rolling window per workflow, one notice on open, a summary on close."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flowguard.engine.breaker import BreakerState, check, peek

HOUR = 3600.0


def run(
    times: list[float], max_executions: int, window: float
) -> list[tuple[bool, str | None, int]]:
    state = BreakerState()
    out = []
    for now in times:
        state, decision = check(
            state, now=now, max_executions=max_executions, window_seconds=window
        )
        out.append((decision.allowed, decision.transition, decision.suppressed_total))
        assert len(state.ran_at) <= max_executions
    return out


def test_the_pages_scenario_fifty_per_hour() -> None:
    # Hour 1: 45 executions -> closed; then 6 more in the same hour: 50 run, 51st on are refused.
    hour1 = [i * 60.0 for i in range(51)]
    decisions = run(hour1, 50, HOUR)
    assert all(allowed for allowed, _, _ in decisions[:45])
    assert [d[0] for d in decisions].count(True) == 50
    assert decisions[50] == (False, "opened", 1)
    # Hour 2: the counter has reset: closed again, with the summary of what was suppressed.
    state = BreakerState()
    for now in hour1:
        state, _ = check(state, now=now, max_executions=50, window_seconds=HOUR)
    assert peek(state, now=hour1[-1], max_executions=50, window_seconds=HOUR) == "open"
    state, decision = check(state, now=2 * HOUR + 1, max_executions=50, window_seconds=HOUR)
    assert (decision.allowed, decision.transition, decision.suppressed_total) == (True, "closed", 1)


def test_sixty_failures_in_a_minute_against_fifty() -> None:
    decisions = run([i * 1.0 for i in range(60)], 50, HOUR)
    assert [d[0] for d in decisions].count(True) == 50
    assert [d[1] for d in decisions].count("opened") == 1


def test_serialization_round_trip() -> None:
    state = BreakerState()
    for now in (1.0, 2.0, 3.0):
        state, _ = check(state, now=now, max_executions=2, window_seconds=10)
    assert BreakerState.from_dict(state.to_dict()) == state
    assert BreakerState.from_dict(BreakerState().to_dict()) == BreakerState()


@settings(max_examples=300)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=50, allow_nan=False), min_size=1, max_size=120),
    max_executions=st.integers(min_value=1, max_value=10),
    window=st.floats(min_value=1, max_value=200, allow_nan=False),
)
def test_window_invariants(gaps: list[float], max_executions: int, window: float) -> None:
    times, now = [], 0.0
    for gap in gaps:
        now += gap
        times.append(now)
    decisions = run(times, max_executions, window)
    allowed = [t for t, d in zip(times, decisions, strict=True) if d[0]]
    # (a) never more than max_executions allowed inside any window
    for t in allowed:
        assert sum(1 for u in allowed if t - window < u <= t) <= max_executions
    # (b) refused only when max_executions allowed ones lie in its trailing window
    for t, (ok, _, _) in zip(times, decisions, strict=True):
        if not ok:
            assert sum(1 for u in allowed if t - window < u <= t) >= max_executions
    # (c) transitions alternate, starting with "opened"
    transitions = [d[1] for d in decisions if d[1]]
    assert transitions == ["opened", "closed"] * (len(transitions) // 2) + ["opened"] * (
        len(transitions) % 2
    )
    # (d) every refusal is reported once in a summary or is still pending
    refused = sum(1 for d in decisions if not d[0])
    summaries = sum(d[2] for d in decisions if d[1] == "closed")
    pending = decisions[-1][2] if not decisions[-1][0] else 0
    assert summaries + pending == refused
