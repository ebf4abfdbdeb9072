"""Small async Kafka helpers, each bounded by a deadline: ``doctor``, ``topics create``, tests.

Every helper owns its admin client from start to close, so a caller never leaks a connection,
and turns "Kafka did not answer" into one :class:`KafkaUnavailable` with a readable reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from flowguard.errors import KafkaUnavailable
from flowguard.kafka_security import client_options
from topics.registry import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)

# What a broker that is down, unreachable or still starting raises from aiokafka and asyncio.
_UNAVAILABLE = (TimeoutError, KafkaError, OSError)


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What one metadata answer says about the cluster."""

    broker_count: int
    controller_id: int | None
    cluster_id: str | None
    topics: tuple[str, ...]


def _new_admin(bootstrap: str, timeout_seconds: float) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(1, int(timeout_seconds * 1000)),
        client_id="flowguard-admin",
        **client_options(),
    )


def failure_reason(exc: BaseException, timeout_seconds: float) -> str:
    """One short phrase for the user on a failed Kafka call (the admin client's, a range
    reader's); aiokafka's own messages list socket tuples."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_seconds:g} s"
    if isinstance(exc, KafkaConnectionError):
        return "cannot connect"
    return str(exc) or type(exc).__name__


async def _close(client: AIOKafkaAdminClient, bootstrap: str, timeout_seconds: float) -> None:
    """Close with a deadline; a close that hangs is logged, never raised over the real outcome."""
    try:
        await asyncio.wait_for(client.close(), timeout_seconds)
    except _UNAVAILABLE as exc:
        log.warning("closing the admin client for %s failed: %r", bootstrap, exc)


@asynccontextmanager
async def _admin(bootstrap: str, timeout_seconds: float) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client; everything in the block within ``timeout_seconds``, no answer
    raised as :class:`KafkaUnavailable`, the client closed on the way out."""
    client = _new_admin(bootstrap, timeout_seconds)
    try:
        async with asyncio.timeout(timeout_seconds):
            await client.start()
            yield client
    except _UNAVAILABLE as exc:
        raise KafkaUnavailable(
            f"Kafka at {bootstrap} did not answer: {failure_reason(exc, timeout_seconds)}"
        ) from exc
    finally:
        await _close(client, bootstrap, timeout_seconds)


async def cluster_info(bootstrap: str, timeout_seconds: float) -> ClusterInfo:
    """Ask the cluster once for its brokers and topics, all within ``timeout_seconds``.

    Raises :class:`KafkaUnavailable` when no broker answers in time.
    """
    async with _admin(bootstrap, timeout_seconds) as client:
        described = await client.describe_cluster()
        names = await client.list_topics()
    return ClusterInfo(
        broker_count=len(described.get("brokers") or []),
        controller_id=described.get("controller_id"),
        cluster_id=described.get("cluster_id"),
        topics=tuple(sorted(names)),
    )


async def wait_for_metadata(
    bootstrap: str, timeout_seconds: float, *, interval_seconds: float = 0.25
) -> ClusterInfo:
    """Ask again and again until a broker is registered, for a broker that is still starting.

    Raises the last :class:`KafkaUnavailable` when ``timeout_seconds`` pass first.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while True:
        remaining = max(deadline - loop.time(), 0.1)
        try:
            info = await cluster_info(bootstrap, remaining)
        except KafkaUnavailable:
            if loop.time() + interval_seconds >= deadline:
                raise
        else:
            if info.broker_count > 0:
                return info
            if loop.time() + interval_seconds >= deadline:
                raise KafkaUnavailable(f"Kafka at {bootstrap} answered with no broker registered")
        await asyncio.sleep(interval_seconds)


async def list_topics(bootstrap: str, timeout_seconds: float) -> tuple[str, ...]:
    """The cluster's topic names, sorted (internal ones such as ``__consumer_offsets`` too)."""
    return (await cluster_info(bootstrap, timeout_seconds)).topics


async def partitions_of(
    bootstrap: str, topics: list[str], timeout_seconds: float
) -> dict[str, list[int]]:
    """Each topic's partition ids, sorted, from the brokers (a fresh client's metadata may not
    list a topic created a moment ago). A missing topic is refused, never auto-created."""
    async with _admin(bootstrap, timeout_seconds) as client:
        described = await client.describe_topics(topics)
    found: dict[str, list[int]] = {}
    for topic in described:
        name, code = topic["topic"], topic["error_code"]
        if code == UnknownTopicOrPartitionError.errno:
            raise KafkaUnavailable(f"topic {name} does not exist: run `flowguard topics create`")
        if code:
            raise KafkaUnavailable(f"describing {name}: error code {code}")
        found[name] = sorted(p["partition"] for p in topic["partitions"])
    return found


async def create_topics(
    bootstrap: str,
    prefix: str,
    timeout_seconds: float,
    *,
    partitions: int | None = None,
    specs: Iterable[TopicSpec] = ALL_TOPICS,
) -> list[str]:
    """Create every registry topic that does not exist yet, in one request; returns those created.

    ``partitions`` overrides the registry's counts (tests use 1 to keep the broker light);
    ``specs`` narrows the topics to these (a test that reads two topics creates two).
    Raises :class:`KafkaUnavailable` when Kafka does not answer, or refuses a topic (the
    broker's reason is in the message).
    """
    async with _admin(bootstrap, timeout_seconds) as client:
        existing = set(await client.list_topics())
        wanted = [_new_topic(spec, prefix, partitions) for spec in specs]
        missing = [topic for topic in wanted if topic.name not in existing]
        if not missing:
            return []
        response = await client.create_topics(missing)
        created = _created(bootstrap, response.to_object()["topic_errors"])
        await _until_served(client, [t.name for t in missing], timeout_seconds)
    return created


async def _until_served(
    client: AIOKafkaAdminClient, names: list[str], within_seconds: float
) -> None:
    """Wait until every partition of ``names`` has a leader: the broker answers CreateTopics
    before its metadata does, and a client that asks at once is told the topic does not exist
    (seen under load: a store opened right after ``topics create`` refused to start)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_seconds
    while True:
        described = await client.describe_topics(names)
        if all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        if loop.time() >= deadline:
            pending = sorted(
                t["topic"] for t in described if t["error_code"] or not t["partitions"]
            )
            raise KafkaUnavailable(
                f"topics created but not yet served after {within_seconds:g}s: {pending}"
            )
        await asyncio.sleep(0.1)


async def delete_topics(bootstrap: str, prefix: str, timeout_seconds: float) -> list[str]:
    """Delete every topic whose name starts with ``prefix``; returns those deleted. For tests
    and benchmarks on a shared broker, which would otherwise keep every run's partitions."""
    async with _admin(bootstrap, timeout_seconds) as client:
        mine = sorted(t for t in await client.list_topics() if t.startswith(prefix))
        if mine:
            await client.delete_topics(mine)
    return mine


def _new_topic(spec: TopicSpec, prefix: str, partitions: int | None) -> NewTopic:
    return NewTopic(
        name=spec.name(prefix),
        num_partitions=partitions or spec.partitions,
        replication_factor=1,
        topic_configs=spec.config(),
    )


def _created(bootstrap: str, topic_errors: list[dict[str, Any]]) -> list[str]:
    """Names the broker created; one that exists already (someone raced us) is what we wanted."""
    created = []
    for result in topic_errors:
        code = result["error_code"]
        if code == 0:
            created.append(result["topic"])
        elif code != TopicAlreadyExistsError.errno:
            reason = result.get("error_message") or f"error code {code}"
            raise KafkaUnavailable(f"Kafka at {bootstrap} refused {result['topic']}: {reason}")
    return created


async def topic_differences(bootstrap: str, prefix: str, timeout_seconds: float) -> list[str]:
    """How existing registry topics differ from their spec: partitions and configs, one line each.

    A topic created by hand or by an older flowguard keeps its settings; the live app needs
    ``events`` and ``scheduled`` co-partitioned and ``workflows`` compacted, so say so.
    """
    async with _admin(bootstrap, timeout_seconds) as client:
        existing = set(await client.list_topics())
        specs = [s for s in ALL_TOPICS if s.name(prefix) in existing]
        if not specs:
            return []
        names = [s.name(prefix) for s in specs]
        described = {t["topic"]: t for t in await client.describe_topics(names)}
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        configs: dict[str, dict[str, str]] = {}
        for response in await client.describe_configs(resources):
            for _code, _msg, _type, name, entries in response.resources:
                configs[name] = {entry[0]: entry[1] for entry in entries}
    found = []
    for spec in specs:
        name = spec.name(prefix)
        partitions = len(described.get(name, {}).get("partitions", []))
        if partitions != spec.partitions:
            found.append(f"{name}: {partitions} partitions, the registry says {spec.partitions}")
        for key, value in spec.config().items():
            actual = configs.get(name, {}).get(key)
            if actual != value:
                found.append(f"{name}: {key} is {actual}, the registry says {value}")
    return found


async def ensure_compacted(
    bootstrap: str, partitions: dict[str, int], timeout_seconds: float
) -> None:
    """Create these compacted topics if missing and wait until metadata shows every partition.

    For Faust's table changelogs: Faust creates them itself, then checks their partition
    count at once, and on a busy broker the metadata may not list them yet: the table's
    agent crashes with PartitionsMismatch. Created (and seen) beforehand, they are simply there.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    async with _admin(bootstrap, timeout_seconds) as client:
        existing = set(await client.list_topics())
        missing = [
            NewTopic(name, count, 1, topic_configs={"cleanup.policy": "compact"})
            for name, count in partitions.items()
            if name not in existing
        ]
        if missing:
            await client.create_topics(missing)
        while True:
            described = await client.describe_topics(list(partitions))
            seen = {t["topic"]: len(t.get("partitions") or []) for t in described}
            if all(seen.get(name) == count for name, count in partitions.items()):
                return
            if loop.time() + 0.25 >= deadline:
                raise KafkaUnavailable(f"topics not ready in {timeout_seconds:g} s: {seen}")
            await asyncio.sleep(0.25)
