"""Small async Kafka helpers with deadlines: used by ``doctor``, ``topics create`` and tests."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from flowguard.errors import KafkaUnavailable
from topics.registry import ALL_TOPICS


async def _admin(bootstrap: str, timeout_seconds: float) -> AIOKafkaAdminClient:
    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_seconds * 1000),
        client_id="flowguard-admin",
    )
    try:
        await asyncio.wait_for(client.start(), timeout_seconds)
    except (TimeoutError, KafkaError, OSError) as exc:
        await client.close()
        raise KafkaUnavailable(f"Kafka at {bootstrap} did not answer: {_why(exc)}") from None
    return client


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def cluster_info(bootstrap: str, timeout_seconds: float) -> tuple[int, list[str]]:
    """(number of brokers, topic names) or :class:`KafkaUnavailable`."""
    client = await _admin(bootstrap, timeout_seconds)
    try:
        described = await asyncio.wait_for(client.describe_cluster(), timeout_seconds)
        names = await asyncio.wait_for(client.list_topics(), timeout_seconds)
    except (TimeoutError, KafkaError, OSError) as exc:
        raise KafkaUnavailable(f"Kafka at {bootstrap} did not answer: {_why(exc)}") from None
    finally:
        await client.close()
    return len(described.get("brokers", [])), sorted(names)


async def create_topics(
    bootstrap: str, prefix: str, timeout_seconds: float, *, partitions: int | None = None
) -> list[str]:
    """Create every registry topic that does not exist yet; returns the names created."""
    client = await _admin(bootstrap, timeout_seconds)
    created = []
    try:
        existing = set(await asyncio.wait_for(client.list_topics(), timeout_seconds))
        for spec in ALL_TOPICS:
            name = spec.name(prefix)
            if name in existing:
                continue
            topic = NewTopic(
                name=name,
                num_partitions=partitions or spec.partitions,
                replication_factor=1,
                topic_configs=spec.config(),
            )
            try:
                await asyncio.wait_for(client.create_topics([topic]), timeout_seconds)
            except TopicAlreadyExistsError:
                continue
            created.append(name)
    finally:
        await client.close()
    return created
