"""The workflows list's figures, from a history projection seeded with executions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowguard.api.summaries import summaries
from flowguard.control.history import HistoryProjection
from tests.unit.control.records import T0, message, record
from topics.execution import BreakerRef, ExecutionRecord
from topics.workflows import WorkflowVersion

HOUR = 3600.0
NOW = T0 + 30 * HOUR + 1800  # half past an hour
VERSION = WorkflowVersion(
    workflow_id="auto-retry",
    workflow_version=2,
    definition={
        "name": "Auto-retry",
        "trigger": {"event": "task.failed"},
        "action": {"type": "retry"},
    },
    saved_at="2027-01-16T00:00:00.000Z",
    saved_by="alice",
)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[HistoryProjection]:
    with HistoryProjection(tmp_path / "history.sqlite") as projection:
        yield projection


def executions(
    *at: float, breaker: str = "closed", window: float = HOUR, first: int = 1
) -> list[ExecutionRecord]:
    """auto-retry executions (record() gives that workflow every third i) at these times."""
    ref = BreakerRef.model_validate(
        {"state": breaker, "count": 5, "max_executions": 5, "window_seconds": window}
    )
    return [
        record(3 * n, at=t).model_copy(update={"circuit_breaker": ref})
        for n, t in enumerate(at, start=first)
    ]


def seed(history: HistoryProjection, records: list[ExecutionRecord]) -> None:
    history.apply("t", [message(r, offset=n) for n, r in enumerate(records)])


def test_sparkline_24h_count_and_last_execution(history: HistoryProjection) -> None:
    seed(
        history,
        [
            *executions(
                NOW - 25 * HOUR,  # more than a day ago: in neither
                NOW - 20 * HOUR,
                NOW - 5 * HOUR - 60,
                NOW - 5 * HOUR,
                NOW - HOUR,
                NOW - 60,
                NOW - 30,
                NOW - 10,
            ),
            record(1, at=NOW - 5),  # another workflow's: not counted
        ],
    )
    [summary] = summaries(history, [VERSION], now=NOW)
    assert summary.executions_24h == 7
    expected = [0] * 24
    expected[23 - 20], expected[23 - 5], expected[23 - 1], expected[23] = 1, 2, 1, 3
    assert summary.sparkline == expected
    assert summary.last_execution is not None
    assert summary.last_execution.execution_id == "ex-000024"  # the 8th: at NOW - 10
    assert summary.last_execution.at == "2027-01-16T14:29:50.000000Z"
    assert (summary.id, summary.version, summary.saved_by) == ("auto-retry", 2, "alice")
    assert summary.circuit_state == "closed"


@pytest.mark.parametrize(
    ("records", "state"),
    [
        ([], None),
        (executions(NOW - 600, breaker="open"), "open"),
        # Open, but its window has passed since: the breaker lets the next one run.
        (executions(NOW - 2 * HOUR, breaker="open"), "closed"),
        (executions(NOW - 2 * HOUR, breaker="open", window=3 * HOUR), "open"),
        (executions(NOW - 600, breaker="open") + executions(NOW - 60, first=2), "closed"),
    ],
)
def test_circuit_state_is_the_live_breakers(
    history: HistoryProjection, records: list[ExecutionRecord], state: str | None
) -> None:
    seed(history, records)
    [summary] = summaries(history, [VERSION], now=NOW)
    assert summary.circuit_state == state
