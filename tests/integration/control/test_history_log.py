"""The history projection against a real execution log: catch up, resume, rebuild."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from flowguard.control.history import HistoryProjection
from tests.helpers import until
from tests.processes import send_all
from tests.unit.control.records import record
from topics.execution import ExecutionRecord
from topics.registry import EXECUTION_LOG


async def produce(bootstrap: str, prefix: str, records: list[ExecutionRecord]) -> None:
    """Keyed by execution id (the workers key by workflow id): the test's few workflows still
    spread over the log's 6 partitions."""
    items = [(r.execution_id.encode(), r.to_json().encode(), None) for r in records]
    await send_all(bootstrap, EXECUTION_LOG.name(prefix), items)


def dump(path: Path) -> list[list[tuple[object, ...]]]:
    """Every row of every table, in a fixed order: two files with equal dumps are identical."""
    with sqlite3.connect(path) as db:
        tables = ("meta", "offsets", "executions", "records", "touches")
        return [sorted(db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables]


def test_catch_up_resume_and_rebuild(
    kafka_bootstrap: str, control_topics: str, tmp_path: Path
) -> None:
    first = [record(i) for i in range(3000)]
    # seq 1 for a tenth of them: the delayed actions resolved, the outcome changed.
    later = [record(i, seq=1, outcome="skipped") for i in range(0, 3000, 10)]
    path = tmp_path / "history.sqlite"

    async def scenario() -> None:
        await produce(kafka_bootstrap, control_topics, first)
        with HistoryProjection(path) as p:
            assert await p.catch_up(kafka_bootstrap, control_topics) == 3000
            assert sum(p.offsets().values()) == 3000
            assert len(p.offsets()) == 6
        await produce(kafka_bootstrap, control_topics, later)
        with HistoryProjection(path) as p:
            # A restart reads only what is new since the stored offsets.
            assert await p.catch_up(kafka_bootstrap, control_topics) == len(later)
            assert await p.catch_up(kafka_bootstrap, control_topics) == 0
            (item,) = p.query(task_id="task-20").items
            assert (item.seq, item.outcome) == (1, "skipped")
            assert [r.seq for r in p.records("ex-000020")] == [0, 1]
            counts = p.counts_per_hour(since=0, until=2e9)
            # i % 3 == 2 were skipped, minus 100 of them now seq 1, plus the 300 seq 1 records.
            assert sum(n for _, outcome, n in counts if outcome == "skipped") == 1000 - 100 + 300

    async def rebuild() -> None:
        with HistoryProjection(path) as p:
            assert await p.catch_up(kafka_bootstrap, control_topics) == 3300

    asyncio.run(scenario())
    before = dump(path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    asyncio.run(rebuild())
    assert dump(path) == before


def test_follow_sees_new_records_until_cancelled(
    kafka_bootstrap: str, control_topics: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with HistoryProjection(tmp_path / "h.sqlite") as p:
            follower = asyncio.create_task(p.follow(kafka_bootstrap, control_topics))
            try:
                await produce(kafka_bootstrap, control_topics, [record(i) for i in range(20)])
                await until(
                    lambda: len(p.query(limit=100).items) == 20,
                    timeout_seconds=10,
                    what="20 executions followed",
                )
                await produce(kafka_bootstrap, control_topics, [record(99)])
                await until(
                    lambda: p.query(limit=1).items[0].execution_id == "ex-000099",
                    timeout_seconds=10,
                    what="the 21st execution followed",
                )
            finally:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
            assert sum(p.offsets().values()) == 21

    asyncio.run(scenario())
