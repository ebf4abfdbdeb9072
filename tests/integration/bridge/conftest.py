"""The bridge tests' topics on the shared Kafka: few partitions, deleted after each test.

Every test has a prefix of its own, and nothing reads a finished test's topics. Left behind,
they add up: the dev broker (512 MB heap) ran out of memory at about 14,000 partitions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from flowguard.kafka_admin import create_topics

#: Several, so "a chain lands in one partition" means something; far fewer than production's.
PARTITIONS = 3
TIMEOUT_SECONDS = 30


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete ``<prefix>.*`` (what create_topics made for this test)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


@pytest.fixture
def topics(kafka_bootstrap: str, topic_prefix: str) -> Iterator[str]:
    asyncio.run(create_topics(kafka_bootstrap, topic_prefix, TIMEOUT_SECONDS,
                              partitions=PARTITIONS))  # fmt: skip
    yield topic_prefix
    asyncio.run(delete_topics(kafka_bootstrap, topic_prefix))
