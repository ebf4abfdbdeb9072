"""The history projection without Kafka: batches applied directly, queries over SQLite."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowguard.control.history import HistoryProjection
from flowguard.errors import HistoryError
from tests.unit.control.records import CLUSTERS, OUTCOMES, T0, WORKFLOWS, message, record
from topics.execution import ExecutionRecord

N = 10_000


@pytest.fixture
def projection(tmp_path: Path) -> Iterator[HistoryProjection]:
    with HistoryProjection(tmp_path / "history.sqlite") as p:
        yield p


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HistoryProjection]:
    """10,000 executions over about 19 hours, applied in batches of 1,000."""
    path = tmp_path_factory.mktemp("history") / "big.sqlite"
    with HistoryProjection(path) as p:
        for start in range(0, N, 1000):
            p.apply("t", [message(record(i), offset=i) for i in range(start, start + 1000)])
        yield p


def all_pages(p: HistoryProjection, limit: int, **filters: object) -> list[ExecutionRecord]:
    items, cursor = [], None
    while True:
        page = p.query(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


def test_paging_over_10000_is_newest_first_without_gaps(big: HistoryProjection) -> None:
    items = all_pages(big, 50)
    assert [r.execution_id for r in items] == [f"ex-{i:06d}" for i in reversed(range(N))]
    assert big.offsets() == {0: N}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"workflow": "alert-payments"}, lambda i: i % 3 == 1),
        ({"outcome": "skipped"}, lambda i: i % 3 == 2),
        ({"trigger": "task.orphaned"}, lambda i: i % 2 == 1),
        ({"cluster": "eu"}, lambda i: i % 2 == 0),
        ({"task_name": "app.tasks.t3"}, lambda i: i % 5 == 3),
        ({"task_id": "task-4242"}, lambda i: i == 4242),
        ({"since": T0 + 7 * 9000}, lambda i: i >= 9000),
        ({"until": T0 + 7 * 10}, lambda i: i < 10),
        ({"workflow": "escalate", "cluster": "us", "outcome": "success"}, lambda i: False),
        (
            {"workflow": "escalate", "cluster": "eu", "since": T0, "until": T0 + 7 * 600},
            lambda i: i % 3 == 2 and i % 2 == 0 and i < 600,
        ),
    ],
)
def test_filters(big: HistoryProjection, filters: dict[str, object], expected: object) -> None:
    want = [f"ex-{i:06d}" for i in reversed(range(N)) if expected(i)]  # type: ignore[operator]
    assert [r.execution_id for r in all_pages(big, 200, **filters)] == want


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limit=st.integers(1, 1000),
    workflow=st.sampled_from((None, *WORKFLOWS)),
    outcome=st.sampled_from((None, *OUTCOMES)),
    cluster=st.sampled_from((None, *CLUSTERS)),
    window=st.tuples(st.integers(0, N), st.integers(0, N)),
)
def test_any_page_size_and_filters_give_the_same_sequence(
    big: HistoryProjection,
    limit: int,
    workflow: str | None,
    outcome: str | None,
    cluster: str | None,
    window: tuple[int, int],
) -> None:
    """Paging never skips nor repeats, whatever the page size, filters and range."""
    lo, hi = sorted(window)
    filters = {"workflow": workflow, "outcome": outcome, "cluster": cluster}
    items = all_pages(big, limit, since=T0 + 7 * lo, until=T0 + 7 * hi, **filters)
    want = [
        f"ex-{i:06d}"
        for i in reversed(range(lo, hi))
        if (workflow is None or WORKFLOWS[i % 3] == workflow)
        and (outcome is None or OUTCOMES[i % 3] == outcome)
        and (cluster is None or CLUSTERS[i % 2] == cluster)
    ]
    assert [r.execution_id for r in items] == want


def test_ties_in_time_page_by_execution_id(projection: HistoryProjection) -> None:
    projection.apply("t", [message(record(i, at=T0), offset=i) for i in range(7)])
    ids = [r.execution_id for r in all_pages(projection, 2)]
    assert ids == [f"ex-{i:06d}" for i in reversed(range(7))]


def test_latest_seq_wins_whatever_the_order_and_all_are_kept(
    projection: HistoryProjection,
) -> None:
    later = record(1, seq=1, outcome="skipped")
    projection.apply("t", [message(later, 0)])
    projection.apply("t", [message(record(1, seq=0, outcome="success"), 1)])
    (item,) = projection.query().items
    assert (item.seq, item.outcome) == (1, "skipped")
    assert [r.seq for r in projection.records("ex-000001")] == [0, 1]
    assert projection.query(outcome="success").items == []


def test_a_record_read_twice_is_one_execution(projection: HistoryProjection) -> None:
    projection.apply("t", [message(record(1), 0), message(record(1), 1)])
    assert len(projection.query().items) == 1
    assert projection.offsets() == {0: 2}


def test_undecodable_records_are_logged_skipped_and_passed(
    projection: HistoryProjection, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flowguard.control.history"):
        applied = projection.apply(
            "log", [message(b"{not json", 0, partition=3), message(record(1), 1, partition=3)]
        )
    assert applied == 1
    assert projection.offsets() == {3: 2}
    assert "skipping log[3]@0: not an execution record" in caplog.text


def test_counts_per_hour(projection: HistoryProjection) -> None:
    at = [T0 + 10, T0 + 20, T0 + 3600 + 5, T0 + 7200 - 1]
    projection.apply(
        "t", [message(record(i, at=a, outcome="failure" if i == 1 else "success"), i)
              for i, a in enumerate(at)],
    )  # fmt: skip
    assert projection.counts_per_hour(since=T0, until=T0 + 7200) == [
        ("2027-01-15T08:00:00Z", "failure", 1),
        ("2027-01-15T08:00:00Z", "success", 1),
        ("2027-01-15T09:00:00Z", "success", 2),
    ]
    # record(i) cycles workflows: only i=0 and i=3 are auto-retry.
    assert projection.counts_per_hour("auto-retry", since=T0, until=T0 + 7200) == [
        ("2027-01-15T08:00:00Z", "success", 1),
        ("2027-01-15T09:00:00Z", "success", 1),
    ]


def test_stats(projection: HistoryProjection) -> None:
    at = {0: T0 - 86_401, 3: T0 - 86_400, 6: T0 - 10, 9: T0 - 5}  # all auto-retry
    projection.apply("t", [message(record(i, at=a), i) for i, a in at.items()])
    stats = projection.stats("auto-retry", now=T0)
    assert stats.executions_24h == 3  # the window includes its start, 24 h before now
    assert stats.last_execution is not None
    assert stats.last_execution.execution_id == "ex-000009"
    assert projection.stats("nobody", now=T0).executions_24h == 0


def test_retry_chain(projection: HistoryProjection) -> None:
    """root fails -> retried as r1, which fails -> retried as r2 (still pending)."""
    projection.apply(
        "t",
        [
            message(record(1, at=T0, task_id="root", root_id="root", retry_task_id="r1"), 0),
            message(record(2, at=T0 + 60, task_id="r1", root_id="root", parent_id="root",
                           retry_task_id="r2"), 1),
            message(record(3, at=T0 + 5, task_id="other", root_id="other"), 2),
        ],
    )  # fmt: skip
    chain = projection.chain("root")
    assert [(t.task_id, t.parent_id) for t in chain] == [
        ("root", None),
        ("r1", "root"),
        ("r2", "r1"),
    ]
    assert chain[0].retried_as == ["r1"]
    assert chain[0].events == ["task.orphaned"]  # record(1) cycles to the orphan trigger
    assert [e.execution_id for e in chain[1].executions] == ["ex-000002"]
    assert chain[2].executions == []
    assert chain[2].retry_status == "scheduled"
    # The execution that created r1 is found by r1's id too.
    assert [r.execution_id for r in projection.query(task_id="r1").items] == [
        "ex-000002",
        "ex-000001",
    ]


def test_bad_queries_name_the_field(projection: HistoryProjection) -> None:
    with pytest.raises(HistoryError, match="cursor: "):
        projection.query(cursor="garbage!")
    with pytest.raises(HistoryError, match="limit: "):
        projection.query(limit=0)


def test_a_file_is_bound_to_one_topic(tmp_path: Path) -> None:
    with HistoryProjection(tmp_path / "h.sqlite") as p:
        p._bind("a.execution-log")
        with pytest.raises(HistoryError, match=r"built from a\.execution-log"):
            p._bind("b.execution-log")


def test_hourly_counters_match_the_rows_after_outcomes_change(
    projection: HistoryProjection,
) -> None:
    """The triggers' counters equal a GROUP BY over the executions, seq updates included."""
    projection.apply("t", [message(record(i, at=T0 + 97 * i), i) for i in range(300)])
    later = [record(i, seq=1, outcome="skipped", at=T0 + 97 * i) for i in range(0, 300, 7)]
    projection.apply("t", [message(r, 300 + n) for n, r in enumerate(later)])
    rows = projection._db.execute(
        "SELECT CAST(at / 3600 AS INTEGER), outcome, count(*) FROM executions "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    counted = projection.counts_per_hour(since=0, until=4e9)
    assert [(h[:13], o, n) for h, o, n in counted] == [
        (_hour_prefix(hour), outcome, n) for hour, outcome, n in rows
    ]


def _hour_prefix(hour: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(hour * 3600, tz=UTC).strftime("%Y-%m-%dT%H")
