"""What the fleet page needs from ``<prefix>.events``, kept small in the API's memory.

Per cluster: the latest ``bridge.status`` of each of its bridges, its Celery workers (the
last worker event of each: online, heartbeat or offline, with its heartbeat interval), the
time of its latest Celery event, and its ``task.failed`` events per hour for the last 24
hours. Nothing else of an event is kept: task events are only counted.

Bounded whatever the fleet does: at most ``MAX_CLUSTERS`` clusters, ``MAX_BRIDGES`` bridges
and ``MAX_WORKERS`` workers per cluster (the least recently heard dropped first), 25 hourly
and 61 per-minute counters per cluster. On start it reads back at most 24 hours, and at most
``backfill_records`` records per partition; ``counted_since`` says from when on the
failure counts are complete.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from flowguard.control.kafka_admin import partitions_of
from flowguard.errors import KafkaUnavailable
from flowguard.kafka_security import client_options
from topics.events import BridgeStatus
from topics.registry import EVENTS

log = logging.getLogger(__name__)
V = TypeVar("V")

HOUR_SECONDS = 3600
DAY_HOURS = 24
MAX_CLUSTERS = 5000
MAX_BRIDGES = 16
MAX_WORKERS = 2000
_WORKER_KINDS = frozenset({"worker.online", "worker.heartbeat", "worker.offline"})


@dataclass(slots=True)
class WorkerSeen:
    """A worker's latest event: ``kind`` says whether it said goodbye, ``freq`` its interval."""

    hostname: str
    kind: str
    last_seen: float
    freq: float | None = None


@dataclass(slots=True)
class ClusterSeen:
    name: str
    last_event_at: float | None = None
    heard_at: float = 0.0  # latest record of any kind: which cluster to drop first
    bridges: dict[str, BridgeStatus] = field(default_factory=dict)
    workers: dict[str, WorkerSeen] = field(default_factory=dict)
    failures: dict[int, int] = field(default_factory=dict)  # hour number -> task.failed
    recent: dict[int, int] = field(default_factory=dict)  # minute number -> task.failed


def _drop_oldest(items: dict[str, V], limit: int, heard: Callable[[V], float]) -> None:
    """Over ``limit``, drop the entries heard from least recently (a new key added one)."""
    while len(items) > limit:
        del items[min(items, key=lambda k: heard(items[k]))]


def _keep_newest(buckets: dict[int, int], span: int) -> None:
    """Keep the buckets within ``span`` of the newest one."""
    newest = max(buckets)
    for old in [b for b in buckets if b <= newest - span]:
        del buckets[old]


class FleetFeed:
    """The fleet's state as the events topic tells it; ``apply`` is the only writer.

    Safe to read from handlers on the same event loop: ``apply`` runs between awaits.
    """

    def __init__(self, *, backfill_records: int = 200_000) -> None:
        self.backfill_records = backfill_records
        self.clusters: dict[str, ClusterSeen] = {}
        self.counted_since: float | None = None
        self.records_read = 0
        self._cut: set[int] = set()
        self._next: dict[int, int] = {}  # partition -> next offset, once read: a retry resumes

    # -- folding records in --------------------------------------------------------------------

    def apply(self, value: bytes | None) -> None:
        """Fold one record of the events topic in; anything not an event is passed over
        (the workers send those to the DLQ, the fleet view only counts)."""
        self.records_read += 1
        try:
            event = orjson.loads(value or b"")
            kind, cluster, at = event["kind"], event["cluster"], float(event["timestamp"])
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            return
        if not isinstance(kind, str) or not isinstance(cluster, str) or not cluster:
            return
        seen = self._cluster(cluster, at)
        if kind == "bridge.status":
            self._bridge(seen, event)
            return
        seen.last_event_at = max(seen.last_event_at or at, at)
        if kind in _WORKER_KINDS:
            self._worker(seen, event, kind, at)
        elif kind == "task.failed":
            self._failure(seen, at)

    def _cluster(self, name: str, at: float) -> ClusterSeen:
        seen = self.clusters.get(name)
        if seen is None:
            seen = self.clusters[name] = ClusterSeen(name, heard_at=at)
            _drop_oldest(self.clusters, MAX_CLUSTERS, lambda c: c.heard_at)
        seen.heard_at = max(seen.heard_at, at)
        return seen

    @staticmethod
    def _bridge(seen: ClusterSeen, event: dict[str, object]) -> None:
        try:
            status = BridgeStatus.model_validate(event)
        except ValidationError as exc:
            log.warning("fleet: a bridge.status of %r does not validate: %s", seen.name, exc)
            return
        known = seen.bridges.get(status.bridge_id)
        if known is None or known.timestamp <= status.timestamp:
            seen.bridges[status.bridge_id] = status
            _drop_oldest(seen.bridges, MAX_BRIDGES, lambda s: s.timestamp)

    @staticmethod
    def _worker(seen: ClusterSeen, event: dict[str, object], kind: str, at: float) -> None:
        hostname = event.get("hostname")
        if not isinstance(hostname, str) or not hostname:
            return
        freq = event.get("freq")
        known = seen.workers.get(hostname)
        if known is not None and known.last_seen > at:
            return  # arrived late: the newer event already says how it is
        seen.workers[hostname] = WorkerSeen(
            hostname,
            kind,
            at,
            float(freq) if isinstance(freq, int | float) and freq > 0 else None,
        )
        _drop_oldest(seen.workers, MAX_WORKERS, lambda w: w.last_seen)

    @staticmethod
    def _failure(seen: ClusterSeen, at: float) -> None:
        hour = int(at // HOUR_SECONDS)
        seen.failures[hour] = seen.failures.get(hour, 0) + 1
        minute = int(at // 60)
        seen.recent[minute] = seen.recent.get(minute, 0) + 1
        _keep_newest(seen.failures, DAY_HOURS + 1)
        _keep_newest(seen.recent, 61)

    def snapshot(self) -> list[ClusterSeen]:
        """A copy to read on another thread while ``apply`` goes on: ``apply`` replaces a
        worker's or bridge's entry, never changes one, so copying the dicts is enough."""
        return [
            replace(
                c,
                bridges=dict(c.bridges),
                workers=dict(c.workers),
                failures=dict(c.failures),
                recent=dict(c.recent),
            )
            for c in self.clusters.values()
        ]

    # -- reading the topic ---------------------------------------------------------------------

    async def follow(
        self, bootstrap: str, prefix: str, *, request_timeout_seconds: float = 10.0
    ) -> None:
        """Read the last 24 hours (bounded), then every new record, until cancelled."""
        topic = EVENTS.name(prefix)
        timeout = request_timeout_seconds
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="flowguard-fleet",
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=max(1000, int(timeout * 1000)),
            **client_options(),
        )
        try:
            async with asyncio.timeout(timeout):
                await consumer.start()
                await self._seek(consumer, bootstrap, topic, timeout)
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for tp, batch in batches.items():
                    self._note_cut(tp.partition, batch)
                    self.apply_all(batch)
                    if batch:
                        self._next[tp.partition] = batch[-1].offset + 1
        except (TimeoutError, KafkaError) as exc:
            raise KafkaUnavailable(f"reading {topic} from {bootstrap}: {exc!r}") from exc
        finally:
            await asyncio.wait_for(consumer.stop(), timeout)

    def apply_all(self, messages: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        for message in messages:
            self.apply(message.value)

    def _note_cut(self, partition: int, batch: list[ConsumerRecord[bytes, bytes]]) -> None:
        """A partition whose backfill was cut counts failures from its first record read."""
        if partition in self._cut and batch:
            self._cut.discard(partition)
            first = batch[0].timestamp / 1000
            self.counted_since = max(self.counted_since or first, first)

    async def _seek(
        self, consumer: AIOKafkaConsumer, bootstrap: str, topic: str, timeout_seconds: float
    ) -> None:
        """Every partition from 24 hours ago, or its last ``backfill_records`` if fewer; where
        this feed read before (a retry after an error), from its next record."""
        found = await partitions_of(bootstrap, [topic], timeout_seconds)
        partitions = [TopicPartition(topic, p) for p in found[topic]]
        consumer.assign(partitions)
        since = time.time() - DAY_HOURS * HOUR_SECONDS
        by_time = await consumer.offsets_for_times(dict.fromkeys(partitions, int(since * 1000)))
        ends = await consumer.end_offsets(partitions)
        begins = await consumer.beginning_offsets(partitions)
        if self.counted_since is None:
            self.counted_since = since
        for tp in partitions:
            if tp.partition in self._next:  # following again after an error: nothing twice
                consumer.seek(tp, max(self._next[tp.partition], begins[tp]))
                continue
            hit = by_time.get(tp)
            start = hit.offset if hit is not None else ends[tp]
            bounded = max(start, ends[tp] - self.backfill_records, begins[tp])
            if bounded > start:
                self._cut.add(tp.partition)  # complete only from its first record read on
            consumer.seek(tp, bounded)
