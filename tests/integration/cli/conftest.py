"""Topics and events for ``replay --from-kafka`` and ``rehearse`` against the real broker."""

from __future__ import annotations

import asyncio
import heapq
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowguard.celery_wire.events import translate
from flowguard.control.kafka_admin import create_topics
from flowguard.settings import get_settings
from tests.processes import send_all
from topics.events import Event
from topics.execution import ExecutionRecord
from topics.keys import RootMemory, record_key
from topics.registry import EVENTS, EXECUTION_LOG

STREAMS = Path(__file__).resolve().parents[2] / "data" / "streams"
#: The recorded streams with something for a workflow to do, in the order they were recorded.
RECORDINGS = (
    "basic", "celery_retry", "flaky_chain", "long_running", "worker_sigkill",
    "worker_sigterm_group", "burst_failures", "worker_sigkill_redelivered",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Published:
    """One event as it went to Kafka: its key, value and record time (ms)."""

    key: bytes
    value: bytes
    timestamp_ms: int


def recorded_events(cluster: str) -> list[Event]:
    """Every recording, one after the other, as the bridge of ``cluster`` translates them."""
    events: list[Event] = []
    for name in RECORDINGS:
        for line in (STREAMS / f"{name}.jsonl").read_text().splitlines():
            event = translate(json.loads(line), cluster)
            if event is not None:
                events.append(event)
    return events


def two_clusters(start_ms: int) -> list[Published]:
    """The recordings as clusters ``a`` and ``b`` saw them, interleaved by event time, keyed
    as the bridge keys them. Event time starts at ``start_ms``; each record is stamped with the
    event time so far (at least a millisecond after the one before), as a bridge publishing
    events as they come stamps them."""
    roots = RootMemory()
    merged = list(heapq.merge(recorded_events("a"), recorded_events("b"), key=_time))
    shift = start_ms / 1000 - merged[0].timestamp
    published: list[Published] = []
    stamp = start_ms - 1
    for event in merged:
        moved = event.model_copy(update={"timestamp": event.timestamp + shift})
        stamp = max(stamp + 1, int(moved.timestamp * 1000))
        value = moved.model_dump_json().encode()
        published.append(Published(record_key(event, roots).encode(), value, stamp))
    return published


def _time(event: Event) -> float:
    return event.timestamp


async def publish_events(bootstrap: str, prefix: str, events: list[Published]) -> None:
    """On ``<prefix>.events`` with their keys and record times, as a bridge publishes them."""
    items = [(item.key, item.value, item.timestamp_ms) for item in events]
    await send_all(bootstrap, EVENTS.name(prefix), items)


async def publish_log(bootstrap: str, prefix: str, records: list[ExecutionRecord]) -> None:
    """On ``<prefix>.execution-log``, keyed by workflow id as the workers write it."""
    items = [(r.workflow.id.encode(), r.to_json().encode(), None) for r in records]
    await send_all(bootstrap, EXECUTION_LOG.name(prefix), items)


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, topic_prefix: str
) -> Iterator[str]:
    """``flowguard`` in-process against this test's events and execution-log topics."""
    asyncio.run(create_topics(kafka_bootstrap, topic_prefix, 30, specs=(EVENTS, EXECUTION_LOG)))
    monkeypatch.setenv("FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("FLOWGUARD_TOPIC_PREFIX", topic_prefix)
    get_settings.cache_clear()
    yield topic_prefix
    get_settings.cache_clear()


def iso_ms(ms: int) -> str:
    """Record time in ms -> the ISO 8601 text --since/--until take."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
