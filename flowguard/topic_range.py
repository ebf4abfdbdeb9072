"""A time range of a topic, read once: the records Kafka stamped from ``since`` to ``until``.

``flowguard replay --from-kafka`` and ``flowguard rehearse`` read ``<prefix>.events`` this way,
and ``rehearse`` reads ``<prefix>.execution-log`` too. The range is by Kafka record time (for
events, when the bridge published them): each partition starts at the offset
``offsets_for_times(since)`` names and stops before the one ``offsets_for_times(until)``
names, or at its end offset as of the start (records produced meanwhile are not waited for).

:func:`read_range` merges the partitions into one stream ordered by (record time, partition,
offset): a partition's own order is kept, and across partitions the events come in the order
the bridges published them, which is the arrival order a file dump has. At most one fetch per
partition is held, so memory does not grow with the range.
"""

from __future__ import annotations

import asyncio
import heapq
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from flowguard.control.kafka_admin import failure_reason, partitions_of
from flowguard.errors import KafkaUnavailable
from flowguard.kafka_security import client_options
from flowguard.settings import Settings

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Records handed on at once: big enough to amortise the await, small enough to show progress.
_BATCH = 5000

Message: TypeAlias = ConsumerRecord[bytes, bytes]
Progress: TypeAlias = Callable[[int, int], None]


def parse_duration(text: str) -> float:
    """``0s``, ``90s``, ``15m``, ``24h``, ``7d`` -> seconds; ValueError saying what was expected."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r}: expected a duration (0s, 90s, 15m, 24h, 7d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_time(text: str, now: float) -> float:
    """``90s``, ``15m``, ``24h``, ``7d`` (that long before ``now``) or an ISO 8601 time
    (``2026-12-01T08:00:00Z``; without an offset it is UTC) -> UTC epoch seconds.

    Raises ValueError saying what was expected.
    """
    value = text.strip()
    match = _DURATION.match(value)
    if match is not None:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r}: expected a duration back from now (90s, 15m, 24h, 7d) "
            "or an ISO 8601 time (2026-12-01T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``since`` up to ``until`` (None: the end of each partition when the read starts)."""

    since: float
    until: float | None = None

    def __post_init__(self) -> None:
        if self.until is not None and self.until <= self.since:
            raise ValueError("--until must be later than --since")

    def holds(self, at: float) -> bool:
        return at >= self.since and (self.until is None or at < self.until)


async def read_range(
    settings: Settings,
    topic: str,
    span: TimeRange,
    *,
    key_prefix: bytes | None = None,
    on_progress: Progress | None = None,
) -> AsyncIterator[list[Message]]:
    """Yield the range's records in batches, merged in (record time, partition, offset) order.

    ``key_prefix`` keeps only records whose key starts with it (``b"prod/"``: one cluster's
    events). ``on_progress(read, total)`` is called after each batch, with records read (kept
    or not) and the range's size in offsets. A partition that yields nothing for
    ``kafka_timeout_seconds`` while records are still due raises :class:`KafkaUnavailable`.
    """
    timeout = settings.kafka_timeout_seconds
    bootstrap = settings.kafka_bootstrap_servers
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="flowguard-range",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=max(1000, int(timeout * 1000)),
        **client_options(settings),
    )
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
            ids = (await partitions_of(bootstrap, [topic], timeout))[topic]
            bounds = await _bounds(consumer, [TopicPartition(topic, p) for p in ids], span)
        merge = _Merge(consumer, bounds, key_prefix, timeout)
        async for batch in merge.batches():
            if on_progress is not None:
                on_progress(merge.read, merge.total)
            if batch:
                yield batch
    except (TimeoutError, KafkaError) as exc:
        raise KafkaUnavailable(
            f"reading {topic} from {bootstrap}: {failure_reason(exc, timeout)}"
        ) from exc
    finally:
        await asyncio.wait_for(consumer.stop(), timeout)


async def _bounds(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], span: TimeRange
) -> dict[TopicPartition, tuple[int, int]]:
    """Each partition's (first offset, offset to stop before) for ``span``."""
    end = await consumer.end_offsets(partitions)

    async def offsets_at(at: float) -> dict[TopicPartition, int]:
        found = await consumer.offsets_for_times(dict.fromkeys(partitions, int(at * 1000)))
        return {tp: end[tp] if found[tp] is None else found[tp].offset for tp in partitions}

    start = await offsets_at(span.since)
    stop = end if span.until is None else await offsets_at(span.until)
    return {tp: (start[tp], min(stop[tp], end[tp])) for tp in partitions}


class _Merge:
    """The k-way merge: a partition's buffer is refilled before any record is chosen while
    it is empty and not finished, so the smallest head is always the next record."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        bounds: dict[TopicPartition, tuple[int, int]],
        key_prefix: bytes | None,
        stall_seconds: float,
    ) -> None:
        self.consumer = consumer
        self.stop = {tp: stop for tp, (start, stop) in bounds.items() if stop > start}
        self.total = sum(stop - start for start, stop in bounds.values() if stop > start)
        self.read = 0
        self.key_prefix = key_prefix
        self.stall_seconds = stall_seconds
        self.buffers: dict[TopicPartition, deque[Message]] = {tp: deque() for tp in self.stop}
        self.heads: list[tuple[int, int, int, TopicPartition]] = []
        self.empty = set(self.stop)  # nothing buffered and not finished
        consumer.assign(list(self.stop))
        for tp, (start, stop) in bounds.items():
            if stop > start:
                consumer.seek(tp, start)

    async def batches(self) -> AsyncIterator[list[Message]]:
        while self.heads or self.empty:
            if self.empty:
                await self._fill()
                continue
            yield self._take()

    def _take(self) -> list[Message]:
        """Records in merged order until a buffer runs dry (it must be refilled first)."""
        batch: list[Message] = []
        prefix, heads, buffers = self.key_prefix, self.heads, self.buffers
        while heads and len(batch) < _BATCH:
            _, _, _, tp = heapq.heappop(heads)
            buffer = buffers[tp]
            message = buffer.popleft()
            self.read += 1
            if prefix is None or (message.key or b"").startswith(prefix):
                batch.append(message)
            if buffer:
                _push(heads, buffer[0], tp)
            elif message.offset + 1 < self.stop[tp]:
                self.empty.add(tp)
                break
        return batch

    async def _fill(self) -> None:
        """Fetch for the partitions with nothing buffered; mark those that reached their stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stall_seconds
        while True:
            fetched = await self.consumer.getmany(*self.empty, timeout_ms=200)
            progressed = False
            for tp, messages in fetched.items():
                stop = self.stop[tp]
                kept = [m for m in messages if m.offset < stop]
                if kept:
                    self.buffers[tp].extend(kept)
                    _push(self.heads, kept[0], tp)
                    self.empty.discard(tp)
                    progressed = True
                elif messages:  # only records past the stop: finished
                    self.empty.discard(tp)
                    progressed = True
            for tp in list(self.empty):
                if await self.consumer.position(tp) >= self.stop[tp]:
                    self.empty.discard(tp)  # the rest were control records or compacted away
                    progressed = True
            if progressed or not self.empty:
                return
            if loop.time() > deadline:
                names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(self.empty))
                raise KafkaUnavailable(
                    f"no records from {names} for {self.stall_seconds:g} s "
                    "while the range is not read to its end"
                )


def _push(
    heads: list[tuple[int, int, int, TopicPartition]], message: Message, tp: TopicPartition
) -> None:
    heapq.heappush(heads, (message.timestamp, tp.partition, message.offset, tp))
