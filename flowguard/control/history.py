"""Execution history: a local SQLite projection of ``<prefix>.execution-log`` for queries.

The log is the history (records are never changed there); this file is only an index of it.
Each batch of records and the offsets they were read up to are written in one SQLite
transaction, so a restarted projection resumes exactly where it stopped, and a deleted file is
rebuilt from the log with the same contents.

An execution can have several records (``seq`` 0 at decision, 1 when delayed actions resolve,
later ones for action statuses): ``records`` keeps all of them for the detail view, and
``executions`` indexes the latest of each (its filter columns and ``seq``) for lists and counts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, ValidationError

from flowguard.control.kafka_admin import partitions_of
from flowguard.errors import HistoryError, KafkaUnavailable
from flowguard.kafka_security import client_options
from topics.execution import ExecutionRecord
from topics.record import from_iso
from topics.registry import EXECUTION_LOG

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS executions (
    execution_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    workflow_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    trigger_event TEXT NOT NULL,
    cluster TEXT,
    task_name TEXT,
    task_id TEXT,
    root_id TEXT
);
CREATE TABLE IF NOT EXISTS records (
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
CREATE TABLE IF NOT EXISTS touches (
    task_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (task_id, execution_id)
) WITHOUT ROWID;
-- Executions per hour, workflow and outcome, kept by triggers in the same transaction as the
-- rows: the charts read a few hundred counters instead of scanning a day of executions.
CREATE TABLE IF NOT EXISTS hourly (
    hour INTEGER NOT NULL,
    workflow_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, workflow_id, outcome)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS count_new AFTER INSERT ON executions BEGIN
    INSERT INTO hourly VALUES (CAST(NEW.at / 3600 AS INTEGER), NEW.workflow_id, NEW.outcome, 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS count_changed AFTER UPDATE OF at, workflow_id, outcome
ON executions BEGIN
    UPDATE hourly SET n = n - 1 WHERE hour = CAST(OLD.at / 3600 AS INTEGER)
        AND workflow_id = OLD.workflow_id AND outcome = OLD.outcome;
    INSERT INTO hourly VALUES (CAST(NEW.at / 3600 AS INTEGER), NEW.workflow_id, NEW.outcome, 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE INDEX IF NOT EXISTS by_time ON executions (at, execution_id, outcome);
CREATE INDEX IF NOT EXISTS by_workflow ON executions (workflow_id, at, execution_id, outcome);
CREATE INDEX IF NOT EXISTS by_workflow_outcome ON executions
    (workflow_id, outcome, at, execution_id);
CREATE INDEX IF NOT EXISTS by_outcome ON executions (outcome, at, execution_id);
CREATE INDEX IF NOT EXISTS by_task_name ON executions (task_name, at, execution_id);
CREATE INDEX IF NOT EXISTS by_root ON executions (root_id, at);
"""

_UPSERT = """
INSERT INTO executions (execution_id, seq, at, workflow_id, outcome, trigger_event, cluster,
                        task_name, task_id, root_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (execution_id) DO UPDATE SET
    seq = excluded.seq, at = excluded.at, workflow_id = excluded.workflow_id,
    outcome = excluded.outcome, trigger_event = excluded.trigger_event,
    cluster = excluded.cluster, task_name = excluded.task_name, task_id = excluded.task_id,
    root_id = excluded.root_id
WHERE excluded.seq >= executions.seq
"""
_FILTERS = {
    "workflow": "workflow_id = ?",
    "outcome": "outcome = ?",
    "trigger": "trigger_event = ?",
    "cluster": "cluster = ?",
    "task_name": "task_name = ?",
    "task_id": "execution_id IN (SELECT execution_id FROM touches WHERE task_id = ?)",
    "since": "at >= ?",
    "until": "at < ?",
}
DAY_SECONDS = 24 * 3600


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Page(_Frozen):
    """One page of executions, newest first; pass ``next_cursor`` back for the next page."""

    items: list[ExecutionRecord]
    next_cursor: str | None


class ChainExecution(_Frozen):
    execution_id: str
    workflow_id: str
    workflow_name: str
    trigger_event: str
    at: str
    outcome: str
    reason: str | None


class ChainTask(_Frozen):
    """One task (attempt) of a retry chain and every execution that touched it."""

    task_id: str
    parent_id: str | None = None
    name: str | None = None
    cluster: str | None = None
    worker: str | None = None
    events: list[str] = []
    exception_type: str | None = None
    error_message: str | None = None
    retried_as: list[str] = []
    retry_status: str | None = None
    executions: list[ChainExecution] = []


class WorkflowStats(_Frozen):
    executions_24h: int
    last_execution: ExecutionRecord | None


def _cursor(at: float, execution_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([at, execution_id]).encode()).decode()


def _uncursor(cursor: str) -> tuple[float, str]:
    try:
        at, execution_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(at), str(execution_id)
    except (ValueError, TypeError) as exc:
        raise HistoryError("cursor: not a next_cursor from a previous page") from exc


def _hour(bucket: int) -> str:
    return datetime.fromtimestamp(bucket * 3600, tz=UTC).strftime("%Y-%m-%dT%H:00:00Z")


def _row(record: ExecutionRecord) -> tuple[Any, ...]:
    task = record.task
    cluster = task.cluster if task else (record.worker.cluster if record.worker else None)
    return (
        record.execution_id,
        record.seq,
        from_iso(record.trigger.at),
        record.workflow.id,
        record.outcome,
        record.trigger.event,
        cluster,
        task.name if task else None,
        task.id if task else None,
        task.root_id if task else None,
    )


def _touched(record: ExecutionRecord) -> Iterator[str]:
    """Task ids an execution touched: its own task and the retries it created."""
    if record.task is not None:
        yield record.task.id
    yield from (a.retry_task_id for a in record.actions if a.retry_task_id)


class HistoryProjection:
    """The SQLite file at ``path``; safe to query from other threads while it catches up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.execute("PRAGMA analysis_limit = 1000")  # keeps PRAGMA optimize cheap
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            # Refresh the planner's statistics so it picks the most selective index per query.
            self._db.execute("PRAGMA optimize")
            self._db.close()

    def __enter__(self) -> HistoryProjection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction; IMMEDIATE so two writers on one file queue instead of failing."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _bind(self, topic: str) -> None:
        """Remember which topic this file projects; refuse to mix two deployments in one file."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('topic', ?)", (topic,))
            (bound,) = db.execute("SELECT value FROM meta WHERE key = 'topic'").fetchone()
        if bound != topic:
            raise HistoryError(f"{self.path}: built from {bound}, not {topic}; use another file")

    def offsets(self) -> dict[int, int]:
        """Partition -> the next offset to read, as stored with the rows."""
        with self._lock:
            return dict(self._db.execute("SELECT partition, next_offset FROM offsets").fetchall())

    # -- catching up ---------------------------------------------------------------------------

    def apply(self, topic: str, messages: Iterable[ConsumerRecord[bytes, bytes]]) -> int:
        """Project one batch and its offsets in one transaction; returns records applied.

        A record that is not a valid execution record is logged with its position and skipped:
        the projection is a reader, the log stays as it is.
        """
        rows: list[tuple[Any, ...]] = []
        records: list[tuple[str, int, str]] = []
        touches: list[tuple[str, str]] = []
        offsets: dict[int, int] = {}
        for message in messages:
            offsets[message.partition] = message.offset + 1
            try:
                raw = message.value.decode() if message.value is not None else "null"
                record = ExecutionRecord.model_validate_json(raw)
            except (ValidationError, UnicodeDecodeError) as exc:
                log.warning(
                    "skipping %s[%d]@%d: not an execution record: %s",
                    topic, message.partition, message.offset, exc,
                )  # fmt: skip
                continue
            rows.append(_row(record))
            records.append((record.execution_id, record.seq, raw))
            touches.extend((task_id, record.execution_id) for task_id in _touched(record))
        with self._write() as db:
            db.executemany(_UPSERT, rows)
            db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", records)
            db.executemany("INSERT OR IGNORE INTO touches VALUES (?, ?)", touches)
            db.executemany(
                "INSERT INTO offsets VALUES (?, ?) ON CONFLICT (partition) DO UPDATE SET "
                "next_offset = max(next_offset, excluded.next_offset)",
                offsets.items(),
            )
        return len(rows)

    async def catch_up(
        self,
        bootstrap: str,
        prefix: str,
        *,
        until_end: bool = True,
        request_timeout_seconds: float = 10.0,
    ) -> int:
        """Read the log from the stored offsets; to its end as of now, or forever (``follow``).

        Returns how many records were applied. Cancelling it loses nothing: every batch is
        committed together with its offsets before the next one is read. Catching up, a log
        that yields nothing for ``request_timeout_seconds`` while behind raises
        :class:`KafkaUnavailable`.
        """
        timeout = request_timeout_seconds
        topic = EXECUTION_LOG.name(prefix)
        self._bind(topic)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="flowguard-history",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            request_timeout_ms=max(1000, int(timeout * 1000)),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **client_options(),
        )
        try:
            async with asyncio.timeout(timeout):
                await consumer.start()
                partitions = await self._assign(consumer, bootstrap, topic, timeout)
                end = await consumer.end_offsets(partitions) if until_end else None
            return await self._consume(consumer, topic, end, timeout)
        except (TimeoutError, KafkaError) as exc:
            raise KafkaUnavailable(f"reading {topic} from {bootstrap}: {exc!r}") from exc
        finally:
            await asyncio.wait_for(consumer.stop(), timeout)

    async def follow(
        self, bootstrap: str, prefix: str, *, request_timeout_seconds: float = 10.0
    ) -> None:
        """Keep the projection current until cancelled (the API runs this in the background)."""
        await self.catch_up(
            bootstrap, prefix, until_end=False, request_timeout_seconds=request_timeout_seconds
        )

    async def _assign(
        self, consumer: AIOKafkaConsumer, bootstrap: str, topic: str, timeout_seconds: float
    ) -> list[TopicPartition]:
        """Every partition of the log, each at its stored offset (or the beginning)."""
        partitions = [
            TopicPartition(topic, p)
            for p in (await partitions_of(bootstrap, [topic], timeout_seconds))[topic]
        ]
        consumer.assign(partitions)
        stored = self.offsets()
        for tp in partitions:
            if tp.partition in stored:
                consumer.seek(tp, stored[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        return partitions

    async def _consume(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        end: dict[TopicPartition, int] | None,
        stall_seconds: float,
    ) -> int:
        applied, loop = 0, asyncio.get_running_loop()
        last_progress = loop.time()
        while end is None or await self._behind(consumer, end):
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            messages = [m for batch in batches.values() for m in batch]
            if messages:
                applied += self.apply(topic, messages)
                last_progress = loop.time()
            elif end is not None and loop.time() - last_progress > stall_seconds:
                raise KafkaUnavailable(
                    f"{topic}: nothing read for {stall_seconds:g} s while behind"
                )
        return applied

    @staticmethod
    async def _behind(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
        for tp, last in end.items():
            if await consumer.position(tp) < last:
                return True
        return False

    # -- queries -------------------------------------------------------------------------------

    def query(
        self,
        workflow: str | None = None,
        outcome: str | None = None,
        trigger: str | None = None,
        cluster: str | None = None,
        task_name: str | None = None,
        task_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Executions matching every filter given, newest (by trigger time) first.

        ``since``/``until`` are epoch seconds (``until`` exclusive); ``task_id`` also finds the
        execution that created that task as a retry.
        """
        if not 1 <= limit <= 1000:
            raise HistoryError("limit: must be between 1 and 1000")
        given = {
            "workflow": workflow, "outcome": outcome, "trigger": trigger, "cluster": cluster,
            "task_name": task_name, "task_id": task_id, "since": since, "until": until,
        }  # fmt: skip
        where = [_FILTERS[name] for name, value in given.items() if value is not None]
        params: list[Any] = [value for value in given.values() if value is not None]
        if cursor is not None:
            where.append("(at, execution_id) < (?, ?)")
            params.extend(_uncursor(cursor))
        sql = (
            "SELECT at, execution_id, record FROM executions JOIN records USING (execution_id, seq)"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY at DESC, execution_id DESC LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, [*params, limit + 1]).fetchall()
        items = [ExecutionRecord.model_validate_json(raw) for _, _, raw in rows[:limit]]
        more = len(rows) > limit
        return Page(items=items, next_cursor=_cursor(*rows[limit - 1][:2]) if more else None)

    def records(self, execution_id: str) -> list[ExecutionRecord]:
        """Every record of one execution, by ``seq``: the detail view."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM records WHERE execution_id = ? ORDER BY seq", (execution_id,)
            ).fetchall()
        return [ExecutionRecord.model_validate_json(raw) for (raw,) in rows]

    def counts_per_hour(
        self,
        workflow: str | None = None,
        *,
        since: float,
        until: float,
        cluster: str | None = None,
    ) -> list[tuple[str, str, int]]:
        """(hour as ISO ``...T14:00:00Z``, outcome, executions) for the charts, oldest first.

        Counts are per whole hour: every hour that overlaps ``[since, until)``.
        """
        if cluster is not None:
            return self._cluster_counts(workflow, cluster, since, until)
        sql = (
            "SELECT hour, outcome, sum(n) FROM hourly WHERE hour >= ? AND hour < ?"
            + (" AND workflow_id = ?" if workflow is not None else "")
            + " GROUP BY hour, outcome HAVING sum(n) > 0 ORDER BY hour, outcome"
        )
        first, end = int(since // 3600), -int(-until // 3600)
        params: list[Any] = [first, end, *([workflow] if workflow is not None else [])]
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [(_hour(hour), outcome, count) for hour, outcome, count in rows]

    def _cluster_counts(
        self, workflow: str | None, cluster: str, since: float, until: float
    ) -> list[tuple[str, str, int]]:
        """``counts_per_hour`` of one cluster: counted from the rows (``hourly`` has no cluster)."""
        sql = (
            "SELECT CAST(at / 3600 AS INTEGER) AS hour, outcome, count(*) FROM executions "
            "WHERE cluster = ? AND at >= ? AND at < ?"
            + (" AND workflow_id = ?" if workflow is not None else "")
            + " GROUP BY hour, outcome ORDER BY hour, outcome"
        )
        first, end = int(since // 3600) * 3600, -int(-until // 3600) * 3600
        params: list[Any] = [cluster, first, end, *([workflow] if workflow is not None else [])]
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [(_hour(hour), outcome, count) for hour, outcome, count in rows]

    def executions_by_cluster(self, *, since: float) -> dict[str, int]:
        """Executions per cluster triggered at or after ``since`` (the fleet page)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT cluster, count(*) FROM executions WHERE at >= ? AND cluster IS NOT NULL "
                "GROUP BY cluster",
                (since,),
            ).fetchall()
        return dict(rows)

    def stats(self, workflow_id: str, *, now: float | None = None) -> WorkflowStats:
        """Executions in the 24 hours before ``now`` (trigger time) and the latest one."""
        since = (time.time() if now is None else now) - DAY_SECONDS
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM executions WHERE workflow_id = ? AND at >= ?",
                (workflow_id, since),
            ).fetchone()
        page = self.query(workflow=workflow_id, limit=1)
        return WorkflowStats(executions_24h=count, last_execution=next(iter(page.items), None))

    def chain(self, root_id: str) -> list[ChainTask]:
        """Every task of a retry chain, in the order they appeared, with their executions."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM executions JOIN records USING (execution_id, seq) "
                "WHERE root_id = ? ORDER BY at, execution_id",
                (root_id,),
            ).fetchall()
        tasks: dict[str, dict[str, Any]] = {}
        for (raw,) in rows:
            _add_to_chain(tasks, ExecutionRecord.model_validate_json(raw))
        return [ChainTask.model_validate(task) for task in tasks.values()]


def _add_to_chain(tasks: dict[str, dict[str, Any]], record: ExecutionRecord) -> None:
    task = record.task
    if task is None:  # a worker trigger: no task, so no chain
        return
    entry = tasks.setdefault(task.id, {"task_id": task.id})
    for field in ("parent_id", "name", "cluster", "worker", "exception_type", "error_message"):
        value = getattr(task, field)
        if value is not None:
            entry[field] = value
    if record.trigger.event not in entry.setdefault("events", []):
        entry["events"].append(record.trigger.event)
    entry.setdefault("executions", []).append(
        ChainExecution(
            execution_id=record.execution_id,
            workflow_id=record.workflow.id,
            workflow_name=record.workflow.name,
            trigger_event=record.trigger.event,
            at=record.trigger.at,
            outcome=record.outcome,
            reason=record.reason,
        )
    )
    for action in record.actions:
        if action.retry_task_id is None:
            continue
        if action.retry_task_id not in entry.setdefault("retried_as", []):
            entry["retried_as"].append(action.retry_task_id)
        retry = tasks.setdefault(action.retry_task_id, {"task_id": action.retry_task_id})
        retry.setdefault("parent_id", task.id)
        retry.setdefault("name", task.name)
        retry.setdefault("cluster", task.cluster)
        retry["retry_status"] = action.status
